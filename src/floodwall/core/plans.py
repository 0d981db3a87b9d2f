"""Limits by plan: ``FLOODWALL_PLANS="free=10/second;pro=100/second,200"``.

Each entry is ``NAME=RATE[,BURST]``. ``RATE`` is ``N/period`` as ``limits`` writes it
(``100/minute``), or a number of requests per second; ``BURST`` defaults to ``N`` (one
period's requests; for a plain number, the rate rounded up). Bounds are the rule book's.
"""

from __future__ import annotations

import math
import re
from typing import Final

import limits

from floodwall.core import rules

__all__ = ["Limit", "parse_plans", "plan_limit", "plan_name"]

Limit = tuple[float, int]
"""(rate in requests per second, burst in requests)."""

_NAME: Final = re.compile(r"[A-Za-z0-9_.-]+")
_FORM: Final = (
    "FLOODWALL_PLANS is 'NAME=RATE[,BURST];...', such as free=10/second;pro=100/second,200"
)


def plan_name(value: object) -> str:
    """A plan's name: 1 to 64 letters, digits, ``_``, ``.`` or ``-``."""
    name = rules.PLAN_NAME.check(value)
    if _NAME.fullmatch(name) is None:
        raise rules.RuleError(f"{rules.PLAN_NAME.message}: letters, digits, _, . or -")
    return name


def plan_limit(rate: str, burst: str | None = None) -> Limit:
    """A plan's (rate, burst) from its text: ``10/second`` or ``2.5``, and a burst."""
    text = rate.strip()
    if "/" in text:
        try:
            item = limits.parse(text)
        except ValueError:
            raise rules.RuleError(f"a plan's rate is N/period or a number ({_FORM})") from None
        per_second = item.amount / item.get_expiry()
        default_burst = item.amount
    else:
        try:
            per_second = float(text)
        except ValueError:
            raise rules.RuleError(f"a plan's rate is N/period or a number ({_FORM})") from None
        default_burst = math.ceil(per_second) if math.isfinite(per_second) else 0
    chosen: object = default_burst
    if burst is not None:
        try:
            chosen = float(burst.strip())
        except ValueError:
            raise rules.RuleError(rules.BURST.message) from None
    return rules.limit(per_second, chosen)


def parse_plans(text: str) -> dict[str, Limit]:
    """``FLOODWALL_PLANS``: name → (rate, burst), in the order written."""
    plans: dict[str, Limit] = {}
    for entry in text.split(";"):
        if not entry.strip():
            continue
        name, sep, limit = entry.partition("=")
        if not sep:
            raise rules.RuleError(_FORM)
        checked = plan_name(name.strip())
        if checked in plans:
            raise rules.RuleError(f"FLOODWALL_PLANS names the plan {checked} twice")
        rate, _, burst = limit.partition(",")
        plans[checked] = plan_limit(rate, burst if burst.strip() else None)
    rules.PLANS.whole_number(len(plans))
    return plans
