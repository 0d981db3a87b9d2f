"""How an operator names a user id with bytes: in a URL (percent-encoded) or a shell argument.

A user id is any Python string the app saw, lone surrogates included (a JWT ``sub`` of
``"\\ud800"`` is one). Bytes name the id the way ``keys.py`` stores it: UTF-8 with
surrogates passed through, so ``ED A0 80`` is ``"\\ud800"`` and every string has a name.
Bytes that are not UTF-8 even so (``FF FE``) name the id Python reads from them with
``surrogateescape`` (``"\\udcff\\udcfe"``), as it reads undecodable bytes from a header,
a path or a command line.
"""

from __future__ import annotations

__all__ = ["id_from_argument", "id_from_bytes"]


def id_from_bytes(data: bytes) -> str:
    """The user id ``data`` names."""
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


def id_from_argument(argument: str) -> str:
    """The user id a command-line argument names: Python decoded its bytes with
    ``surrogateescape``, so ``$'\\xed\\xa0\\x80'`` in a shell is ``"\\ud800"``."""
    try:
        data = argument.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # A program calling main() with a lone surrogate of its own: it is the id.
        return argument
    return id_from_bytes(data)
