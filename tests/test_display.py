"""What the terminal is shown of text from outside: ``floodwall.core.display`` and
``floodwall.core.naming``, alone (the commands' output is in test_cli_hostile.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floodwall.core.display import shell_word, shown
from floodwall.core.naming import id_from_argument, id_from_bytes

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice", "alice"),
        ("alice smith", "alice smith"),
        ("", ""),
        ("\u00fcn\u00ef \u4e2d\u6587 \U0001f600", "\u00fcn\u00ef \u4e2d\u6587 \U0001f600"),
        ("\x1b[2J", "\\x1b[2J"),
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),
        ("evil\u202egnp.exe", "evil\\u202egnp.exe"),
        ("\u00a0\u2028\u2029\u3000", "\\xa0\\u2028\\u2029\\u3000"),
        ("\ufeff\u200b\u00ad", "\\ufeff\\u200b\\xad"),
        ("\ud800", "\\ud800"),
        ("\udcff\udcfe", "\\udcff\\udcfe"),
        ("\U000e0041\U0010ffff", "\\U000e0041\\U0010ffff"),
        # A backslash is doubled, so no id can pass for another's escape.
        ("a\\x1b", "a\\\\x1b"),
    ],
)
def test_shown_escapes_what_is_not_printable(text: str, expected: str) -> None:
    assert shown(text) == expected


def test_every_bidi_control_is_escaped() -> None:
    assert shown(BIDI) == "".join(f"\\u{ord(char):04x}" for char in BIDI)


@given(st.text())
def test_shown_is_one_printable_line_that_tells_ids_apart(text: str) -> None:
    result = shown(text)
    assert result.isprintable()
    assert "\t" not in result
    assert "\n" not in result
    result.encode("utf-8")  # no lone surrogate left
    assert set(result).isdisjoint(BIDI)
    # Python reads the escapes back: distinct ids never look the same.
    assert _unescape(result) == text


ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[\\tnr])")
NAMED = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def _unescape(text: str) -> str:
    # Every backslash starts one escape.
    assert "\\" not in ESCAPE.sub("", text)
    return ESCAPE.sub(lambda m: NAMED.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice", "alice"),
        ("1700000000000-0", "1700000000000-0"),
        ("", "$''"),
        ("a b", "$'a b'"),
        ("it's", "$'it\\'s'"),
        ("a\nb\t\\", "$'a\\nb\\t\\\\'"),
        ("\u00fc", "$'\\xc3\\xbc'"),
        ("\ud800", "$'\\xed\\xa0\\x80'"),
        ("\x1b[2J", "$'\\x1b[2J'"),
    ],
)
def test_shell_word_quotes_for_bash(text: str, expected: str) -> None:
    assert shell_word(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice",
        "a b",
        "it's",
        "a\nb\tc\\d",
        "\x1b[2J\u202e",
        "\u00fcn\u00ef",
        "\ud800",
        "x\udcff\udcfe",
    ],
)
def test_bash_gives_back_the_text_shell_word_quoted(text: str) -> None:
    # What a program started as `prog <word>` from bash receives, decoded as floodwall does.
    script = (
        f"{sys.executable} -c 'import sys; sys.stdout.buffer.write(repr(sys.argv[1]).encode())' "
    )
    done = subprocess.run(
        ["bash", "-c", script + shell_word(text)], capture_output=True, check=True
    )
    argument = eval(done.stdout.decode())  # noqa: S307 - the repr of one str
    assert id_from_argument(argument) == text


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"alice", "alice"),
        (b"", ""),
        ("\u00fc".encode(), "\u00fc"),
        # An encoded surrogate is that surrogate, as keys.py stores it.
        (b"\xed\xa0\x80", "\ud800"),
        (b"\xed\xb3\xbf", "\udcff"),
        # Bytes that are not UTF-8 even so: Python's surrogateescape.
        (b"\xff\xfe", "\udcff\udcfe"),
        (b"\xed\xa0\x80\xff", "\udced\udca0\udc80\udcff"),
    ],
)
def test_bytes_name_ids_as_keys_store_them(data: bytes, expected: str) -> None:
    assert id_from_bytes(data) == expected


@given(st.text())
def test_every_id_has_bytes_that_name_it(user_id: str) -> None:
    assert id_from_bytes(user_id.encode("utf-8", "surrogatepass")) == user_id


def test_an_argument_names_the_id_of_its_bytes() -> None:
    assert id_from_argument("alice") == "alice"
    # bash's $'\xed\xa0\x80', as Python decodes argv.
    assert id_from_argument("\udced\udca0\udc80") == "\ud800"
    assert id_from_argument("\udcff") == "\udcff"
    # A program passing a lone surrogate of its own to main().
    assert id_from_argument("\ud800") == "\ud800"
