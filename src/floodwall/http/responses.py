"""What a refused request sees, and the RateLimit fields every checked response carries.

Refusals are RFC 9457 ``application/problem+json`` bodies; the rate-limit fields follow
draft-ietf-httpapi-ratelimit-headers-11 (``RateLimit-Policy`` and ``RateLimit``). Bodies
never carry secrets, stack traces or an operator's block reason.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Final

from floodwall.core.decision import Decision, Outcome, whole_seconds
from floodwall.core.types import Receive, Scope, Send

__all__ = [
    "IDENTITY_UNAVAILABLE",
    "PROBLEM_TYPE_BASE",
    "Refusal",
    "answer",
    "rate_limit_headers",
    "refusal",
    "whole_seconds",
]

PROBLEM_TYPE_BASE = "urn:floodwall:problem:"

Headers = list[tuple[bytes, bytes]]


class Refusal:
    """A prepared refusal: status, headers and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


@functools.lru_cache(maxsize=256)
def _policy(name: str, rate: float, burst: int) -> bytes:
    # A bucket of `burst` tokens refilled at `rate`/s grants `burst` per burst/rate seconds.
    window = max(1, math.ceil(burst / rate))
    return f'"{name}";q={burst};w={window}'.encode()


def rate_limit_headers(name: str, decision: Decision) -> Headers:
    """``RateLimit-Policy`` and ``RateLimit`` for a checked request."""
    if decision.outcome is Outcome.LIMITED:
        reset = whole_seconds(decision.retry_after)
    else:
        reset = math.ceil(decision.reset_after)
    return [
        (b"ratelimit-policy", _policy(name, decision.rate, decision.burst)),
        (b"ratelimit", f'"{name}";r={decision.remaining};t={reset}'.encode()),
    ]


def _problem(
    status: int, kind: str, title: str, detail: str, headers: Headers, **extra: str
) -> Refusal:
    body = json.dumps(
        {
            "type": PROBLEM_TYPE_BASE + kind,
            "title": title,
            "status": status,
            "detail": detail,
            **extra,
        }
    ).encode()
    return Refusal(
        status,
        [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        body,
    )


@functools.lru_cache(maxsize=1024)
def _limited(retry_after: int, policy: str) -> Refusal:
    return _problem(
        429,
        "quota-exceeded",
        "Too Many Requests",
        f"The request quota of this client is used up; retry after {retry_after} seconds.",
        [(b"retry-after", str(retry_after).encode())],
        policy=policy,
    )


_BLOCKED = _problem(403, "account-blocked", "Account Blocked", "This account is blocked.", [])
_REVOKED = _problem(
    401,
    "credentials-revoked",
    "Credentials Revoked",
    "The credential used for this request has been revoked; sign in again.",
    [(b"www-authenticate", b'Bearer error="invalid_token"')],
)
_RESET_REQUIRED = _problem(
    403,
    "password-reset-required",
    "Password Reset Required",
    "This account must set a new password before it can continue.",
    [],
)
_CONCURRENCY_EXCEEDED = _problem(
    429,
    "concurrency-exceeded",
    "Too Many Requests In Flight",
    "This client has as many requests in flight as it may; retry when one has finished.",
    [(b"retry-after", b"1")],
)
_NETWORK_BLOCKED = _problem(
    403,
    "network-blocked",
    "Network Blocked",
    "Requests from this client's network are blocked.",
    [],
)
_UNAVAILABLE = _problem(
    503,
    "rate-limiter-unavailable",
    "Service Unavailable",
    "The rate limiter cannot reach its store; retry shortly.",
    [(b"retry-after", b"1")],
)
_OVERLOADED = _problem(
    503,
    "overloaded",
    "Service Unavailable",
    "The server is at capacity and this client holds its fair share of it; retry shortly.",
    [(b"retry-after", b"1")],
)

IDENTITY_UNAVAILABLE: Final = _problem(
    503,
    "identity-unavailable",
    "Service Unavailable",
    "The identity provider's keys cannot verify this request's credential now; retry shortly.",
    [(b"retry-after", b"1")],
)
"""A bearer token whose key could not be had in time: never taken for an anonymous client."""


def refusal(decision: Decision, policy: str = "user") -> Refusal:
    """The response for a decision that refuses the request; a limited one names the
    ``policy`` that refused it (``user``, ``anonymous`` or a route limit's key)."""
    outcome = decision.outcome
    if outcome is Outcome.LIMITED:
        return _limited(whole_seconds(decision.retry_after), policy)
    if outcome is Outcome.BLOCKED:
        return _BLOCKED
    if outcome is Outcome.REVOKED:
        return _REVOKED
    if outcome is Outcome.RESET_REQUIRED:
        return _RESET_REQUIRED
    if outcome is Outcome.NETWORK_BLOCKED:
        return _NETWORK_BLOCKED
    if outcome is Outcome.UNAVAILABLE:
        return _UNAVAILABLE
    if outcome is Outcome.CONCURRENCY_EXCEEDED:
        return _CONCURRENCY_EXCEEDED
    if outcome is Outcome.OVERLOADED:
        return _OVERLOADED
    raise ValueError(f"{outcome!r} does not refuse")


async def answer(
    scope: Scope, receive: Receive, send: Send, refused: Refusal, headers: list[tuple[bytes, bytes]]
) -> None:
    """Send ``refused`` with ``headers``: an HTTP response, or for a websocket, at connect,
    the same answer where the server has the denial-response extension, else a close
    before accept (the client sees HTTP 403)."""
    if scope["type"] == "http":
        await _send_response(send, "http.response", refused, headers)
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await _send_response(send, "websocket.http.response", refused, headers)
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": ""})


async def _send_response(
    send: Send, prefix: str, refused: Refusal, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({"type": f"{prefix}.start", "status": refused.status, "headers": headers})
    await send({"type": f"{prefix}.body", "body": refused.body, "more_body": False})
