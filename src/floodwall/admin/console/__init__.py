"""The operator console: one page, one script module and one stylesheet, served by the admin
app at ``{mount}/console``.

The files hold no data, so they need no token; everything the page shows comes from the
admin API's JSON routes, which the script calls with the operator's token. The page names
its assets relatively (``console/console.js``) and the script its routes (``top``,
``users/...``), so the console works wherever the admin app is mounted.

Every file is served with the same headers: a Content-Security-Policy that allows only
these files (no inline script or style at all, no framing, no ``<base>``, no form that
submits anywhere, so a token typed before the script loads never lands in a URL),
``nosniff``, no referrer and no caching.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["ASSETS", "HEADERS", "console_routes"]

HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

ASSETS: Final = {
    "/console": ("index.html", "text/html; charset=utf-8"),
    "/console/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/console/console.css": ("console.css", "text/css; charset=utf-8"),
}
"""Path in the admin app -> (package file, media type)."""


def _asset(body: bytes, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    async def asset(request: Request) -> Response:
        return Response(body, headers=HEADERS, media_type=media_type)

    return asset


def console_routes() -> list[Route]:
    """The console's routes, each file read once, here."""
    folder = files(__name__)
    return [
        Route(path, _asset(folder.joinpath(name).read_bytes(), media_type), methods=["GET"])
        for path, (name, media_type) in ASSETS.items()
    ]
