"""The demo app: log in, call the API, watch the limit and the kill switch work.

``floodwall demo`` serves it; it runs on the in-memory store unless ``FLOODWALL_REDIS_URL``
is set.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid

import jwt
from pydantic import BaseModel, Field, SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from floodwall.middleware import FloodwallMiddleware
from floodwall.request_log import JsonFormatter
from floodwall.service import Floodwall
from floodwall.settings import FloodwallSettings

__all__ = ["configure_logging", "create_app"]

TOKEN_LIFETIME_SECONDS = 3600


class _Login(BaseModel):
    user: str = Field(min_length=1, max_length=256)


def _problem(status: int, title: str, detail: str) -> Response:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def configure_logging() -> None:
    """JSON lines on stderr for floodwall's loggers, as an operator's pipeline wants them."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("floodwall", "floodwall.audit", "floodwall.requests"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def create_app(settings: FloodwallSettings | None = None) -> Starlette:
    """Build the demo app; without ``FLOODWALL_JWT_SECRET`` a secret is generated."""
    settings = settings if settings is not None else FloodwallSettings()
    if settings.jwt_secret is None:
        settings = settings.model_copy(update={"jwt_secret": SecretStr(secrets.token_urlsafe(64))})
    assert settings.jwt_secret is not None
    key = settings.jwt_secret.get_secret_value()
    # The demo signs with the first algorithm the app accepts, so its tokens verify.
    algorithm = settings.jwt_algorithms[0]
    floodwall = Floodwall(settings)

    async def login(request: Request) -> Response:
        try:
            body = _Login.model_validate_json(await request.body())
        except ValidationError:
            return _problem(422, "Unprocessable Content", 'The body must be {"user": "<name>"}.')
        # iat carries milliseconds, so a token issued right after a revocation is not
        # mistaken for one issued before it.
        issued_at = round(time.time(), 3)
        claims = {
            "sub": body.user,
            "iat": issued_at,
            "exp": int(issued_at) + TOKEN_LIFETIME_SECONDS,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, key, algorithm=algorithm)
        return JSONResponse({"access_token": token, "token_type": "bearer"})

    def _claims(request: Request) -> dict[str, object] | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims: dict[str, object] = jwt.decode(
                token, key, algorithms=[algorithm], options={"require": ["sub"]}
            )
        except jwt.InvalidTokenError:
            return None
        return claims

    async def hello(request: Request) -> Response:
        if "authorization" not in request.headers:
            return JSONResponse({"hello": "anonymous"})
        claims = _claims(request)
        if claims is None:
            return _problem(401, "Unauthorized", "The bearer token is not valid.")
        return JSONResponse({"hello": claims["sub"]})

    async def change_password(request: Request) -> Response:
        # The demo's reset flow: a real app would check and store the new password first.
        claims = _claims(request)
        if claims is None:
            return _problem(401, "Unauthorized", "Sign in first.")
        await floodwall.clear_password_reset(str(claims["sub"]), actor="app")
        return JSONResponse({"password_changed": True})

    async def metrics(request: Request) -> Response:
        body, content_type = floodwall.metrics.render()
        return Response(body, media_type=content_type)

    app = Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/api/hello", hello, methods=["GET"]),
            Route("/account/password", change_password, methods=["POST"]),
            Mount("/admin", floodwall.admin_app()),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                FloodwallMiddleware,
                floodwall=floodwall,
                # Operators must never be rate limited out of their own kill switch.
                exempt_paths=["/admin", "/metrics"],
                password_reset_paths=["/account/password"],
            )
        ],
    )
    app.state.floodwall = floodwall
    return app
