"""The types of the command line's arguments, and the one-line error for bad input.

Bounds come from the rule book (``floodwall.core.rules``), so a value the command takes is
one the admin API and the settings take too.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Final, NoReturn

from floodwall.core import rules
from floodwall.core.naming import id_from_bytes

__all__ = [
    "Parser",
    "UsageError",
    "ids_from_file",
    "interval",
    "parse_duration",
    "rate",
    "ttl",
    "whole",
    "workers",
]

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    """Bad input on the command line."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are a ``UsageError``."""

    def error(self, message: str) -> NoReturn:
        # One line, not a usage dump: operators read this mid-incident.
        raise UsageError(message)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d`` → seconds; bounds are the caller's rule."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError("not a duration (try 90s, 15m, 1h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def interval(text: str) -> float:
    """A refresh period: a duration above 0."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the interval is a duration above 0 (try 2s)")
    return seconds


def rate(text: str) -> float:
    """Requests per second, or a rate such as ``600/minute``."""
    try:
        return rules.rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def whole(bound: rules.Bound) -> Callable[[str], int]:
    """The type of a whole number within ``bound``."""

    def parse(text: str) -> int:
        try:
            return int(bound.from_text(text))
        except rules.RuleError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def workers(text: str) -> int:
    """The demo's worker processes."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError("--workers is a whole number from 1 to 64")
    return int(text)


def ttl(text: str) -> float:
    """How long a block lasts: a duration within the rule book's bound."""
    try:
        return rules.TTL_SECONDS.number(parse_duration(text))
    except rules.RuleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ids_from_file(name: str) -> list[str]:
    """One id per line (``\\n`` or ``\\r\\n``); empty lines are skipped (block the empty
    id with ``floodwall block ''``). Bytes name ids as in a URL (``floodwall.core.naming``)."""
    try:
        if name == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(name, "rb") as file:
                data = file.read()
    except OSError as exc:
        raise UsageError(f"--from-file: {exc.strerror}: {name}") from None
    lines = (line.removesuffix(b"\r") for line in data.split(b"\n"))
    return [id_from_bytes(line) for line in lines if line]
