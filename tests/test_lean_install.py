"""A lean install: ``pip install .`` alone into a fresh virtualenv brings no ASGI server,
and floodwall serves an app under hypercorn there."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from harness import find_free_port, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

APP = textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings, Identify, Identity


    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")


    def by_header(scope) -> Identity | None:
        for key, value in scope["headers"]:
            if key == b"x-user":
                return Identity(value.decode())
        return None


    identify: Identify = by_header
    floodwall = Floodwall(FloodwallSettings(rate=1, burst=2))
    app = FloodwallMiddleware(
        Starlette(routes=[Route("/", hello)]), floodwall=floodwall, identify=identify
    )
    """
)


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The test environment's pip installs into the new virtualenv, with pip's cache.
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_pip_install_alone_needs_no_asgi_server(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    installed = _pip(venv, "install", "--disable-pip-version-check", "-q", str(ROOT))
    assert installed.returncode == 0, installed.stderr
    # No server came with it.
    assert _pip(venv, "show", "uvicorn").returncode == 1
    python = str(venv / "bin" / "python")
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util, floodwall; print(importlib.util.find_spec('uvicorn'))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.stdout == "None\n", probe.stderr
    # The demo says what it needs, in one line.
    demo = subprocess.run(
        [str(venv / "bin" / "floodwall"), "demo"], capture_output=True, text=True, check=False
    )
    assert (demo.returncode, demo.stderr) == (
        1,
        "floodwall: error: the demo needs uvicorn: pip install 'floodwall[demo]'\n",
    )

    # The app's own server, here hypercorn.
    served = _pip(venv, "install", "--disable-pip-version-check", "-q", "hypercorn")
    assert served.returncode == 0, served.stderr
    (tmp_path / "app.py").write_text(APP)
    port = find_free_port()
    log_path = tmp_path / "hypercorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(venv / "bin" / "hypercorn"), "app:app", "--bind", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def serving() -> bool:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", headers={"x-user": "probe"})
                except httpx.TransportError:
                    assert server.poll() is None, log_path.read_text()
                    return False
                return True

            wait_until(serving, "hypercorn serves the app", within=30, interval=0.1)
            answers = [
                httpx.get(f"http://127.0.0.1:{port}/", headers={"x-user": "alice"})
                for _ in range(3)
            ]
        finally:
            server.terminate()
            server.wait(10)
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[0].text == "hello"
    assert answers[0].headers["ratelimit-policy"] == '"user";q=2;w=2'
