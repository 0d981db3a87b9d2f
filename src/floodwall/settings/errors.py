"""Refusals without their inputs, and the one line a surface shows for them."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from floodwall.core.errors import FloodwallError
from floodwall.settings.variables import printable, variable

__all__ = ["hidden", "problem", "settings_error"]


def hidden(exc: ValidationError) -> list[InitErrorDetails]:
    """``exc``'s errors without their inputs; a value error keeps only its message (the
    exception object it came with may hold the input in its ``__context__``)."""
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        ctx = error.get("ctx")
        if error["type"] == "value_error" and ctx is not None:
            ctx = {"error": ValueError(str(ctx["error"]))}
        detail: InitErrorDetails = {"type": error["type"], "loc": error["loc"], "input": None}
        if ctx is not None:
            detail["ctx"] = ctx
        details.append(detail)
    return details


def problem(field: str, message: str) -> InitErrorDetails:
    """A refusal of ``field`` that says ``message`` and holds no input."""
    return {
        "type": "value_error",
        "loc": (field,),
        "input": None,
        "ctx": {"error": ValueError(message)},
    }


def settings_error(exc: Exception) -> str:
    """The one line a surface shows for settings that were refused; never an input value.

    Each problem names the ``FLOODWALL_*`` variable it is about; several are joined by ``;``.
    """
    if isinstance(exc, ValidationError):
        text = "; ".join(_problems(exc))
    elif isinstance(exc, FloodwallError):
        text = str(exc)
    else:
        # Not one of ours: its message may quote anything it was given.
        text = type(exc).__name__
    return printable(f"bad settings: {text}")


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        ctx = error.get("ctx")
        if error["type"] == "value_error" and ctx is not None:
            # floodwall's own messages name their variable.
            problems.append(str(ctx["error"]))
        elif error["loc"]:
            problems.append(f"{variable(str(error['loc'][0]))}: {error['msg']}")
        else:
            problems.append(error["msg"])
    return problems
