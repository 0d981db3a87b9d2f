"""Assertions that a response was refused by floodwall, and why: a refusal is floodwall's
when its body is an RFC 9457 problem whose type is floodwall's (``urn:floodwall:problem:``),
so an app's own 429 or 403 never passes for one."""

from __future__ import annotations

import json
from typing import Any, Protocol

from floodwall.http.responses import PROBLEM_TYPE_BASE

__all__ = [
    "assert_blocked",
    "assert_limited",
    "assert_not_refused",
    "assert_reset_required",
    "assert_revoked",
    "refusal_kind",
]


class Response(Protocol):
    """What the assertions read of a response: httpx's, Starlette's ``TestClient``'s."""

    @property
    def status_code(self) -> int:
        """The HTTP status."""
        ...

    @property
    def headers(self) -> Any:
        """The headers, a mapping of names to values."""
        ...

    @property
    def content(self) -> bytes:
        """The body."""
        ...


def refusal_kind(response: Response) -> str | None:
    """The kind of floodwall's refusal (``quota-exceeded``, ``account-blocked``...), or
    ``None`` when floodwall did not refuse the response."""
    if not str(response.headers.get("content-type", "")).startswith("application/problem+json"):
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    if not isinstance(kind, str) or not kind.startswith(PROBLEM_TYPE_BASE):
        return None
    return kind.removeprefix(PROBLEM_TYPE_BASE)


def _assert_refused(response: Response, status: int, kind: str) -> None:
    found = refusal_kind(response)
    if response.status_code != status or found != kind:
        got = f"floodwall's {found}" if found else "no refusal of floodwall's"
        raise AssertionError(
            f"expected floodwall to refuse with {status} {kind}; got {response.status_code}, {got}"
        )


def assert_limited(response: Response) -> None:
    """Refused by a rate limit (429 ``quota-exceeded``), with a ``Retry-After``."""
    _assert_refused(response, 429, "quota-exceeded")
    if "retry-after" not in response.headers:
        raise AssertionError("floodwall's 429 carries no Retry-After")


def assert_blocked(response: Response) -> None:
    """Refused because the account is blocked (403 ``account-blocked``)."""
    _assert_refused(response, 403, "account-blocked")


def assert_revoked(response: Response) -> None:
    """Refused because the credential is revoked (401 ``credentials-revoked``)."""
    _assert_refused(response, 401, "credentials-revoked")


def assert_reset_required(response: Response) -> None:
    """Refused until the password is reset (403 ``password-reset-required``)."""
    _assert_refused(response, 403, "password-reset-required")


def assert_not_refused(response: Response) -> None:
    """Passed by floodwall: whatever the app answered, floodwall refused nothing."""
    found = refusal_kind(response)
    if found is not None:
        raise AssertionError(f"floodwall refused it: {response.status_code} {found}")
