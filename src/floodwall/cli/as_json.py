"""The ``--json`` form of each answer: exact values, for scripts."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, Final

from floodwall.cli.answer import Answer
from floodwall.control.actions import BulkBlockResult, bulk_counts
from floodwall.core.stored import Limit
from floodwall.killswitch.status import UserStatus, windows_json

__all__ = ["document", "dumps"]

_Json = dict[str, Any]


def dumps(data: Any) -> str:
    """``data`` as one line of JSON."""
    # ASCII only: ids with lone surrogates are \udXXX escapes, still valid JSON, and the
    # output survives any terminal or pipe encoding.
    return json.dumps(data, ensure_ascii=True)


def document(args: argparse.Namespace, answer: Answer) -> _Json:
    """The JSON document that shows ``answer``; an action's tells how many workers
    received it (``received_by``) and how many replicas acknowledged it (``replicas``)."""
    if isinstance(answer.result, UserStatus):
        return answer.result.to_json() | _defaults(answer) | _received(answer)
    return _FORMS[args.command](args, answer)


def _received(answer: Answer) -> _Json:
    if not answer.acted:
        return {}
    return {"received_by": answer.received_by, "replicas": answer.replicas.acknowledged}


def _limit(limit: Limit | None) -> _Json | None:
    return None if limit is None else {"rate": limit[0], "burst": limit[1]}


def _defaults(answer: Answer) -> _Json:
    return {
        "store": answer.store,
        "default_limit": {"live": _limit(answer.live), "configured": _limit(answer.configured)},
    }


def _top(args: argparse.Namespace, answer: Answer) -> _Json:
    offenders, networks = answer.result
    rows = [
        {"subject": o.subject, "anonymous": o.anonymous, "refusals": o.refusals} for o in offenders
    ]
    nets = [{"network": n.network, "refusals": n.refusals} for n in networks]
    return {"window_seconds": args.window, "items": rows, "networks": nets}


def _route_limits(args: argparse.Namespace, answer: Answer) -> _Json:
    return {"routes": windows_json(answer.result)} | _received(answer)


def _bulk_block(args: argparse.Namespace, answer: Answer) -> _Json:
    results: list[BulkBlockResult] = answer.result
    blocked, failed = bulk_counts(results)
    items = [result.to_json() for result in results]
    return {"items": items, "blocked": blocked, "failed": failed} | _received(answer)


def _network_block(args: argparse.Namespace, answer: Answer) -> _Json:
    data: _Json = answer.result.to_json()
    return data | {"blocked": True} | _received(answer)


def _network_unblock(args: argparse.Namespace, answer: Answer) -> _Json:
    return {"network": answer.result, "blocked": False} | _received(answer)


def _default_limit(args: argparse.Namespace, answer: Answer) -> _Json:
    limit: Limit = answer.result
    return {"rate": limit[0], "burst": limit[1]} | _defaults(answer) | _received(answer)


def _plan(args: argparse.Namespace, answer: Answer) -> _Json:
    if answer.acted:
        name, limit = answer.result
        return {"plan": name, "limit": _limit(limit), "store": answer.store} | _received(answer)
    plans: dict[str, Limit] = answer.result
    return {"plans": [{"plan": name, **(_limit(limit) or {})} for name, limit in plans.items()]}


def _blocked_list(args: argparse.Namespace, answer: Answer) -> _Json:
    if args.networks:
        return {"items": [block.to_json() for block in answer.result]}
    statuses, cursor = answer.result
    return {"items": [status.to_json() for status in statuses], "next_cursor": cursor}


def _audit(args: argparse.Namespace, answer: Answer) -> _Json:
    records, cursor = answer.result
    return {"items": [record.to_json() for record in records], "next_cursor": cursor}


_FORMS: Final[dict[str, Callable[[argparse.Namespace, Answer], _Json]]] = {
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
