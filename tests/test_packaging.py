"""The package as a user gets it: built with ``python -m build``, checked by ``twine``, and
its wheel installed alone into a fresh virtualenv, where it brings no ASGI server, serves
an app under hypercorn, and (with the ``demo`` extra) runs the demo on a real Redis, which
needs the Lua scripts inside the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import httpx
import pytest
import redis
from demo_process import demo_process

from floodwall import __version__
from floodwall.admin.console import ASSETS
from harness import RedisServer, find_free_port, wait_until

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


def _run(
    *args: str | Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    environment.update(env or {})
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=environment,
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it, as ``python -m build`` makes them."""
    out = tmp_path_factory.mktemp("dist")
    built = _run(sys.executable, "-m", "build", "--outdir", out, ROOT, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("floodwall-*.whl")
    return found


def _fresh_venv(where: Path, *requirements: str) -> Path:
    """A new virtualenv of the base Python with its own pip, and ``requirements`` in it;
    its ``bin`` folder."""
    base = getattr(sys, "_base_executable", sys.executable)
    made = _run(base, "-m", "venv", where)
    assert made.returncode == 0, made.stderr
    pip = (where / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q")
    installed = _run(*pip, "install", *requirements)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return where / "bin"


def test_the_distributions_pass_twine_check_and_the_wheel_carries_the_scripts(
    dist: Path, wheel: Path
) -> None:
    checked = _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout
    names = set(zipfile.ZipFile(wheel).namelist())
    lua = {
        path.name
        for path in (ROOT / "src" / "floodwall" / "stores" / "redis" / "lua").glob("*.lua")
    }
    assert lua
    assert {f"floodwall/stores/redis/lua/{name}" for name in lua} <= names
    assert "floodwall/py.typed" in names
    # The operator console's page and assets, which the admin app reads from the package.
    console = {f"floodwall/admin/console/{name}" for name, _ in ASSETS.values()}
    assert console == {
        "floodwall/admin/console/index.html",
        "floodwall/admin/console/console.js",
        "floodwall/admin/console/console.css",
    }
    assert console <= names


def test_the_wheel_alone_needs_no_asgi_server(tmp_path: Path, wheel: Path) -> None:
    bin_dir = _fresh_venv(tmp_path / "venv", str(wheel))
    python = str(bin_dir / "python")
    # No server came with it.
    probe = _run(
        python, "-c", "import importlib.util, floodwall; print(importlib.util.find_spec('uvicorn'))"
    )
    assert probe.stdout == "None\n", probe.stderr
    version = _run(bin_dir / "floodwall", "--version")
    assert (version.returncode, version.stdout) == (0, f"floodwall {__version__}\n")
    # The demo says what it needs, in one line.
    demo = _run(bin_dir / "floodwall", "demo")
    assert (demo.returncode, demo.stderr) == (
        1,
        "floodwall: error: the demo needs uvicorn: pip install 'floodwall[demo]'\n",
    )

    # The app's own server, here hypercorn.
    served = _run(python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "hypercorn")
    assert served.returncode == 0, served.stderr
    (tmp_path / "app.py").write_text(APP)
    port = find_free_port()
    log_path = tmp_path / "hypercorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(bin_dir / "hypercorn"), "app:app", "--bind", f"127.0.0.1:{port}"],
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


def test_the_wheel_runs_the_demo_and_the_operator_commands_on_redis(
    tmp_path: Path, wheel: Path, redis_server: RedisServer
) -> None:
    demo_bin = _fresh_venv(tmp_path / "venv", f"{wheel}[demo]")
    prefix = "wheel"
    env = {"FLOODWALL_REDIS_URL": redis_server.url, "FLOODWALL_KEY_PREFIX": prefix}
    floodwall = str(demo_bin / "floodwall")
    with (
        demo_process(tmp_path, command=[floodwall], **env) as url,
        httpx.Client(base_url=url, timeout=5) as http,
    ):
        token = http.post("/login", json={"user": "alice"}).json()["access_token"]
        auth = {"authorization": f"Bearer {token}"}
        assert http.get("/api/hello", headers=auth).json() == {"hello": "alice"}
        # The bucket is in Redis: check.lua ran from the installed package.
        with redis.Redis.from_url(redis_server.url) as client:
            assert client.keys(f"{prefix}:*bucket")
        # An operator command of the installed script, through update_state.lua.
        blocked = _run(floodwall, "block", "alice", "--reason", "wheel check", timeout=60, env=env)
        assert blocked.returncode == 0, blocked.stderr

        def refused() -> bool:
            return http.get("/api/hello", headers=auth).status_code == 403

        wait_until(refused, "the demo refuses the blocked user", within=10, interval=0.05)
