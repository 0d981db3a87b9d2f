"""Text from outside (ids, reasons, actors, details) made safe to print in a terminal.

A user id is whatever the app accepts as a login name, so it may hold escape sequences that
clear the screen or move the cursor, newlines or tabs that forge rows and columns, bidi
controls that reorder what follows, and lone surrogates that a strict UTF-8 stdout cannot
encode at all. ``shown`` writes each such character as a Python-style escape (``\\x1b``,
``\\n``, ``\\t``, ``\\u202e``, ``\\udcff``) and doubles backslashes, so what is printed is
one line of printable characters that still tells every id apart.

``shell_word`` quotes text for a shell instead, for output an operator pastes back (a
``--cursor``): a bash ``$'...'`` word whose bytes the ``floodwall`` command reads back as
exactly that text (see ``floodwall.core.naming``).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["shell_word", "shown"]

_SHELL_PLAIN: Final = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_NAMED: Final = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
# The bidi controls are format characters (Cf), which isprintable() refuses already; they
# are named here so that a change in Python's tables cannot let one through.
_BIDI: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    if char == " " or (char.isprintable() and char not in _BIDI):
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(text: str) -> str:
    """``text`` with every character that is not printable (controls, tabs, newlines,
    bidi and other format characters, separators other than the space, surrogates,
    unassigned code points) and the backslash escaped: safe in a terminal and in a
    tab-separated column."""
    if text.isprintable() and "\\" not in text and _BIDI.isdisjoint(text):
        return text
    return "".join(_escape(char) for char in text)


def shell_word(text: str) -> str:
    """``text`` as one bash word, in ASCII: plain when it needs no quoting, else
    ``$'...'`` with every other character as its UTF-8 bytes (surrogates passed through,
    as the command decodes them back)."""
    if _SHELL_PLAIN.fullmatch(text):
        return text
    parts = []
    for char in text:
        if char == "'" or char == "\\":
            parts.append("\\" + char)
        elif char in _NAMED:
            parts.append(_NAMED[char])
        elif " " <= char <= "~":
            parts.append(char)
        else:
            parts.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    return "$'" + "".join(parts) + "'"
