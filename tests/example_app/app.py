"""An app of the kind floodwall protects, built around the Floodwall it is given: in
production ``Floodwall()`` (Redis, from the environment), in its tests one from
``floodwall.testing``. docs/testing.md shows this file."""

from fastapi import FastAPI

from floodwall import Floodwall, FloodwallMiddleware, HeaderIdentity


def create_app(floodwall: Floodwall | None = None) -> FastAPI:
    app = FastAPI()
    app.add_middleware(
        FloodwallMiddleware,
        floodwall=floodwall if floodwall is not None else Floodwall(),
        identify=HeaderIdentity("x-user"),  # the gateway's header, for this example
    )

    @app.get("/api/items")
    async def items() -> dict[str, list[str]]:
        return {"items": ["a", "b"]}

    @app.get("/api/teapot", status_code=418)
    async def teapot() -> dict[str, str]:
        return {"detail": "the app's own refusal, not floodwall's"}

    return app
