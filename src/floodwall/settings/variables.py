"""The ``FLOODWALL_*`` environment variables: each setting's name, and the ones that name
no setting."""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection
from typing import Final

__all__ = ["OTHER_VARIABLES", "PREFIX", "printable", "unknown_variables", "variable"]

PREFIX: Final = "FLOODWALL_"

OTHER_VARIABLES: Final = frozenset({"FLOODWALL_DEMO_POOL"})
"""``FLOODWALL_*`` variables that are read elsewhere (the demo), so they are not unknown."""


def variable(field: str) -> str:
    """The environment variable of a setting."""
    return PREFIX + field.upper()


def printable(text: str) -> str:
    """``text`` on one line, whatever it holds."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def unknown_variables(fields: Collection[str]) -> list[tuple[str, str]]:
    """(variable, message) for each ``FLOODWALL_*`` variable that names none of ``fields``:
    a typo would otherwise leave its setting at the default (a misspelt Redis URL: the
    in-memory store)."""
    known = {variable(field) for field in fields} | OTHER_VARIABLES
    problems = []
    for name in sorted(os.environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known:
            continue
        shown = printable(name)
        close = difflib.get_close_matches(upper.removeprefix(PREFIX).lower(), list(fields), n=1)
        hint = f" (did you mean {variable(close[0])}?)" if close else ""
        problems.append((shown, f"unknown setting {shown}{hint}"))
    return problems
