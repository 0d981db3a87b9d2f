"""The readable form of each answer: one line per item, columns separated by tabs, and
every id, reason and actor escaped (``floodwall.core.display``), so no value can forge a
line or a column."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from floodwall.cli.answer import Answer
from floodwall.control.actions import BulkBlockResult, bulk_counts
from floodwall.core.display import shell_word, shown
from floodwall.core.stored import Limit
from floodwall.killswitch.audit import AuditRecord
from floodwall.killswitch.networks import NetworkBlock
from floodwall.killswitch.status import UserStatus
from floodwall.observe.top import Offender, RefusingNetwork

__all__ = ["lines", "top_tables"]


def lines(args: argparse.Namespace, answer: Answer) -> list[str]:
    """The lines that show ``answer`` to a reader."""
    if isinstance(answer.result, UserStatus):
        return [_describe(answer.result, answer)]
    form = _FORMS[args.command]
    return form(args, answer)


def top_tables(offenders: list[Offender], networks: list[RefusingNetwork], window: int) -> str:
    """The most refused subjects, then the most refused networks."""
    return _top_table(offenders, window) + "\n" + _networks_table(networks)


def _limit(limit: Limit) -> str:
    return f"{limit[0]:g}/s, burst {limit[1]}"


def _rows(rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"{name:<26}{shown(value)}" for name, value in rows)


def _columns(*values: str) -> str:
    """One tab-separated row; tabs and newlines inside a value are escaped."""
    return "\t".join(shown(value) for value in values)


def _defaults(answer: Answer) -> list[tuple[str, str]]:
    live = (
        f"{_limit(answer.live)} (set by an operator: every app applies it)"
        if answer.live is not None
        else "none (each app applies its configured default)"
    )
    return [
        ("live default limit", live),
        ("configured default limit", f"{_limit(answer.configured)} (this shell's settings)"),
        ("store", answer.store),
    ]


def _describe(status: UserStatus, answer: Answer) -> str:
    rows = [
        ("user", status.user_id),
        ("blocked", _blocked(status)),
        ("credentials not before", status.to_json()["credentials_not_before"] or "-"),
        ("password reset required", "yes" if status.password_reset_required else "no"),
        ("limit", _user_limit(status)),
    ]
    if status.plan is not None:
        rows.append(("plan", status.plan))
    if status.concurrency is not None:
        rows.append(("requests in flight", f"at most {status.concurrency} (custom)"))
    rows += [
        ("route limit", f"{route}: {count} per {period_us / 1_000_000:g}s (custom)")
        for route, (count, period_us) in sorted(status.route_limits.items())
    ]
    return _rows(rows + _defaults(answer))


def _blocked(status: UserStatus) -> str:
    if not status.blocked:
        return "no"
    until = status.to_json()["blocked_until"] or "no end"
    return f"yes, until {until}, by {status.blocked_by}: {status.reason}"


def _user_limit(status: UserStatus) -> str:
    limit = _limit((status.rate, status.burst))
    limit += " (custom)" if status.limit_overridden else " (default)"
    limit += ", shadow: observed, not enforced" if status.shadow else ""
    return limit


def _top_table(offenders: list[Offender], window: int) -> str:
    lines = [f"most refused over the last {window}s ({datetime.now(UTC):%H:%M:%S} UTC)"]
    lines.append(f"{'refusals':>10}  {'kind':<9}  subject")
    for entry in offenders:
        kind = "address" if entry.anonymous else "user"
        lines.append(f"{entry.refusals:>10}  {kind:<9}  {shown(entry.subject)}")
    if not offenders:
        lines.append("  (no refusals)")
    return "\n".join(lines)


def _networks_table(networks: list[RefusingNetwork]) -> str:
    lines = ["", "most refused networks (anonymous clients by /24 or /64)"]
    lines.append(f"{'refusals':>10}  network")
    lines += [f"{entry.refusals:>10}  {shown(entry.network)}" for entry in networks]
    if not networks:
        lines.append("  (no refusals)")
    return "\n".join(lines)


def _top(args: argparse.Namespace, answer: Answer) -> list[str]:
    offenders, networks = answer.result
    return [top_tables(offenders, networks, args.window)]


def _route_limits(args: argparse.Namespace, answer: Answer) -> list[str]:
    routes: dict[str, tuple[int, int]] = answer.result
    if not routes:
        return ["no route limit changed: every app applies its own"]
    return [
        "\n".join(
            f"{shown(route)}\t{limit} per {period_us / 1_000_000:g}s"
            for route, (limit, period_us) in sorted(routes.items())
        )
    ]


def _bulk_block(args: argparse.Namespace, answer: Answer) -> list[str]:
    results: list[BulkBlockResult] = answer.result
    lines = []
    for result in results:
        if result.blocked:
            until = result.to_json()["blocked_until"] or "no end"
            lines.append(_columns(result.user_id, f"blocked until {until}"))
        else:
            lines.append(_columns(result.user_id, f"not blocked: {result.error}"))
    blocked, failed = bulk_counts(results)
    return [*lines, f"blocked {blocked} of {blocked + failed} users"]


def _network_row(block: NetworkBlock) -> str:
    until = block.to_json()["blocked_until"] or "no end"
    return _columns(block.network, f"until {until}", f"by {block.blocked_by}", block.reason or "")


def _network_block(args: argparse.Namespace, answer: Answer) -> list[str]:
    return [_network_row(answer.result)]


def _network_unblock(args: argparse.Namespace, answer: Answer) -> list[str]:
    return [_columns(answer.result, "not blocked")]


def _default_limit(args: argparse.Namespace, answer: Answer) -> list[str]:
    return [_rows(_defaults(answer))]


def _plan(args: argparse.Namespace, answer: Answer) -> list[str]:
    if answer.acted:
        name, limit = answer.result
        shown_limit = _limit(limit) if limit is not None else "none: its users get the default"
        return [_rows([(f"plan {name}", shown_limit), ("store", answer.store)])]
    plans: dict[str, Limit] = answer.result
    if not plans:
        return ["no plans (FLOODWALL_PLANS)"]
    return [_columns(name, _limit(limit)) for name, limit in plans.items()]


def _blocked_row(status: UserStatus) -> str:
    until = status.to_json()["blocked_until"] or "no end"
    return _columns(
        status.user_id, f"until {until}", f"by {status.blocked_by}", status.reason or ""
    )


def _blocked_list(args: argparse.Namespace, answer: Answer) -> list[str]:
    if args.networks:
        return [_network_row(block) for block in answer.result]
    statuses, cursor = answer.result
    return [_blocked_row(status) for status in statuses] + _more(cursor)


def _audit_row(record: AuditRecord) -> str:
    data = record.to_json()
    parts = [data["time"] or "-", record.actor, record.action, record.user_id or "-"]
    parts += [f"reason: {record.reason}"] if record.reason else []
    parts += [f"expires {data['expires']}"] if record.expires_ms else []
    parts += [record.detail] if record.detail else []
    return _columns(*parts)


def _audit(args: argparse.Namespace, answer: Answer) -> list[str]:
    records, cursor = answer.result
    return [_audit_row(record) for record in records] + _more(cursor)


def _more(cursor: str | None) -> list[str]:
    """The line that asks for the next page, ready to paste into a shell."""
    return [] if cursor is None else [f"more: --cursor={shell_word(cursor)}"]


_FORMS: Final[dict[str, Callable[[argparse.Namespace, Answer], list[str]]]] = {
    "top": _top,
    "route-limit": _route_limits,
    "block": _bulk_block,
    "block-network": _network_block,
    "unblock-network": _network_unblock,
    "blocked": _blocked_list,
    "default-limit": _default_limit,
    "plan": _plan,
    "audit": _audit,
}
