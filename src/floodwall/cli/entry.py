"""``main``: one command run, and each way it can fail turned into one line and an exit
status (2: bad input or settings; 1: the store or the action failed; 130: interrupted)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from collections.abc import Sequence

from pydantic import ValidationError

from floodwall.cli.answer import Answer
from floodwall.cli.arguments import UsageError
from floodwall.cli.output import audit_lines_to_stderr, error, show, warn
from floodwall.cli.parser import parser
from floodwall.cli.session import run
from floodwall.core import rules
from floodwall.core.errors import ConfigurationError, FloodwallError, StorageError
from floodwall.settings import settings_error

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = parser().parse_args(argv)
        if args.command == "demo":
            return _demo(args)
        with audit_lines_to_stderr():
            answer = asyncio.run(run(args))
    except UsageError as exc:
        return error(exc, 2)
    except (ValidationError, ConfigurationError) as exc:
        return error(settings_error(exc), 2)
    except StorageError as exc:
        return error(f"the store did not answer: {exc}", 1)
    except rules.RuleError as exc:
        return error(exc, 2)
    except (FloodwallError, ValueError) as exc:
        return error(exc, 1)
    except KeyboardInterrupt:
        return 130
    show(args, answer)
    warn(answer)
    return _status(args, answer)


def _status(args: argparse.Namespace, answer: Answer) -> int:
    if isinstance(answer.result, list) and args.command == "block":
        # A bulk block that left anyone out is not done.
        return 0 if all(result.blocked for result in answer.result) else 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    # uvicorn is the demo extra's: floodwall itself needs no ASGI server.
    if importlib.util.find_spec("uvicorn") is None:
        return error("the demo needs uvicorn: pip install 'floodwall[demo]'", 1)
    # The demo serves with uvicorn, an extra: imported only once it is known here.
    from floodwall.demo import serve

    serve(args.host, args.port, args.workers)
    return 0
