"""What a command leaves on the terminal: the answer on stdout (readable, or JSON with
``--json``); on stderr, a warning when no running app received an action, and each
action's audit line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from floodwall.cli import as_json, text
from floodwall.cli.answer import Answer
from floodwall.core.display import shown
from floodwall.killswitch.audit import audit_logger
from floodwall.observe.request_log import JsonFormatter

__all__ = ["audit_lines_to_stderr", "error", "show", "warn"]


def show(args: argparse.Namespace, answer: Answer) -> None:
    """Print ``answer`` on stdout."""
    if args.json:
        print(as_json.dumps(as_json.document(args, answer)))
        return
    for line in text.lines(args, answer):
        print(line)


def warn(answer: Answer) -> None:
    """One line on stderr when no running app received an action, or none can be counted;
    one when no replica acknowledged it, where the primary has some."""
    if answer.acted and answer.replicas.connected and not answer.replicas.acknowledged:
        print(
            "floodwall: warning: the change is stored on the primary, but none of its "
            f"{answer.replicas.connected} replica(s) acknowledged it within "
            "FLOODWALL_REDIS_WAIT_TIMEOUT: a failover now may lose it",
            file=sys.stderr,
        )
    if not answer.acted or answer.received_by not in (None, 0):
        return
    where = shown(answer.store.removesuffix(f", key prefix {answer.prefix}"))
    if answer.received_by is None:
        warning = (
            f"the change is stored on {where}, but the store could not count the workers "
            "that received it"
        )
    else:
        warning = (
            f"no running app follows key prefix {json.dumps(answer.prefix)} on {where}: the "
            "change is stored, but no worker has received it"
        )
    print(f"floodwall: warning: {warning}", file=sys.stderr)


def error(message: object, status: int) -> int:
    """Print ``message`` as the command's one error line; returns ``status``."""
    print(f"floodwall: error: {shown(str(message))}", file=sys.stderr)
    return status


@contextmanager
def audit_lines_to_stderr() -> Iterator[None]:
    """Each action's ``floodwall.audit`` line on stderr, as JSON, the way the app logs it:
    log pipelines that never read the store learn of terminal actions too."""
    # Without a handler the line goes nowhere (INFO is below logging's last resort). A
    # program that calls main() with logging set up already receives it through its own
    # handlers: a second one here would print it twice, and its levels are its choice.
    if audit_logger.hasHandlers():
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    level = audit_logger.level
    audit_logger.addHandler(handler)
    audit_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        # main() may run again in the same process, with another sys.stderr.
        audit_logger.removeHandler(handler)
        audit_logger.setLevel(level)
