"""The kill switch never fails silently: revocations hold while Redis is down, the reset hook
fires once per reset in one process, lifted blocks reach every worker's local answers, ended
blocks leave the mirror, and a flood of huge ids costs bounded memory."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from conftest import FakeClock
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import (
    Clock,
    Decision,
    Floodwall,
    FloodwallMiddleware,
    FloodwallSettings,
    Identity,
    MemoryStore,
    Outcome,
)
from floodwall.core.ids import MAX_HELD
from floodwall.core.user_state import Listing
from floodwall.killswitch.mirror import KillSwitchMirror
from floodwall.limiting.deny_cache import DenyCache
from floodwall.stores.state_fields import StateSnapshot
from harness import RedisServer, wait_until, wait_until_async

# A long-running app process with a reset hook that appends the user id to a file.
HOOK_APP = """
import asyncio, sys
from floodwall import Floodwall, FloodwallSettings

async def main(url, out):
    async def hook(user_id):
        with open(out, "a") as f:
            f.write(user_id + "\\n")
    fw = Floodwall(FloodwallSettings(redis_url=url), on_password_reset=hook)
    await fw.start()
    await fw.following.wait()
    print("following", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer.start(tmp_path) as own:
        yield own


async def test_a_credential_revoked_by_id_is_refused_while_redis_is_down(
    server: RedisServer,
) -> None:
    floodwall = Floodwall(FloodwallSettings(redis_url=server.url, redis_timeout=0.05))
    await floodwall.start()
    try:
        await floodwall.revoke_credential("alice", "stolen-jti")
        stolen = Identity("alice", issued_at=1.0, credential_id="stolen-jti")
        other = Identity("alice", issued_at=1.0, credential_id="fresh-jti")
        assert (await floodwall.check(stolen)).outcome is Outcome.REVOKED
        server.kill()
        for _ in range(5):
            assert (await floodwall.check(stolen)).outcome is Outcome.REVOKED
        assert (await floodwall.check(other)).outcome is Outcome.ALLOWED
    finally:
        await floodwall.stop()


async def test_another_worker_learns_a_revoked_id_and_holds_it_without_redis(
    server: RedisServer,
) -> None:
    settings = FloodwallSettings(redis_url=server.url, redis_timeout=0.05)
    acting, serving = Floodwall(settings), Floodwall(settings)
    await serving.start()
    await asyncio.wait_for(serving.following.wait(), 5)
    try:
        await acting.revoke_credential("bob", "jti-1")
        await wait_until_async(
            lambda: (
                (user := serving.mirror.get("bob")) is not None
                and "jti-1" in user.kill_switch.revoked
            ),
            "the revoked id reaches the other worker",
            within=2,
        )
        server.kill()
        decision = await serving.check(Identity("bob", issued_at=1.0, credential_id="jti-1"))
        assert decision.outcome is Outcome.REVOKED
    finally:
        await acting.stop()
        await serving.stop()


async def test_a_credential_without_a_usable_iat_counts_as_issued_before_a_revocation(
    server: RedisServer,
) -> None:
    floodwall = Floodwall(FloodwallSettings(redis_url=server.url))
    try:
        # The JWT identity gives such a credential issued_at=0.0 (tests/test_identity.py).
        assert (await floodwall.check(Identity("carol", issued_at=0.0))).allowed
        await floodwall.revoke("carol")
        assert (await floodwall.check(Identity("carol", issued_at=0.0))).outcome is (
            Outcome.REVOKED
        )
    finally:
        await floodwall.stop()


def _start_hook_app(url: str, out: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", HOOK_APP, url, str(out)],
            stdout=subprocess.PIPE,
            stderr=errors,
            env={k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")},
        )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"following", log.read_text()
    return process


def _cli(url: str, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    subprocess.run(
        [sys.executable, "-m", "floodwall.cli", *args, "--redis-url", url],
        check=True,
        capture_output=True,
        env=env,
        timeout=30,
    )


def _delivered(outs: list[Path]) -> list[str]:
    return sorted(
        line for out in outs if out.exists() for line in out.read_text().splitlines() if line
    )


async def test_the_reset_hook_fires_once_per_reset_across_app_processes(
    server: RedisServer, tmp_path: Path
) -> None:
    # Required while no app runs: the first app to start delivers it.
    _cli(server.url, "reset-password", "early")
    outs = [tmp_path / "hook-a.txt", tmp_path / "hook-b.txt"]
    apps = [
        _start_hook_app(server.url, out, tmp_path / f"app-{n}.log") for n, out in enumerate(outs)
    ]
    try:
        wait_until(lambda: _delivered(outs) == ["early"], "the early reset is delivered", within=10)
        # From the CLI, from Python in a process with no hook, and twice for one user: two
        # resets, two deliveries.
        _cli(server.url, "reset-password", "dave")
        bystander = Floodwall(FloodwallSettings(redis_url=server.url))
        await bystander.require_password_reset("erin")
        await bystander.clear_password_reset("dave")
        await bystander.require_password_reset("dave")
        await bystander.stop()
        expected = ["dave", "dave", "early", "erin"]
        wait_until(lambda: _delivered(outs) == expected, "each reset delivered once", within=5)
        await asyncio.sleep(1.5)  # a resync or a late message would deliver a second time
        assert _delivered(outs) == expected
    finally:
        for app in apps:
            app.terminate()
            app.wait(10)
            if app.stdout is not None:
                app.stdout.close()


async def test_a_reset_in_a_process_with_the_hook_is_delivered_there_once() -> None:
    delivered: list[str] = []

    async def hook(user_id: str) -> None:
        delivered.append(user_id)

    floodwall = Floodwall(FloodwallSettings(), on_password_reset=hook)
    await floodwall.start()
    try:
        await floodwall.require_password_reset("frank")
        await floodwall.resync()
        await asyncio.sleep(0.1)
        assert delivered == ["frank"]
    finally:
        await floodwall.stop()


async def test_a_failing_hook_is_retried_by_the_next_resync() -> None:
    calls: list[str] = []

    async def flaky(user_id: str) -> None:
        calls.append(user_id)
        if len(calls) == 1:
            raise RuntimeError("mail server down")

    floodwall = Floodwall(FloodwallSettings(), on_password_reset=flaky)
    try:
        await floodwall.require_password_reset("gina")
        await floodwall.resync()
        await floodwall.resync()
        assert calls == ["gina", "gina"]
    finally:
        await floodwall.stop()


async def test_the_in_memory_store_says_its_state_is_per_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    floodwall = Floodwall(FloodwallSettings())
    with caplog.at_level(logging.WARNING, logger="floodwall"):
        await floodwall.start()
    await floodwall.stop()
    lines = [r.getMessage() for r in caplog.records if "this process only" in r.getMessage()]
    assert len(lines) == 1
    assert "FLOODWALL_REDIS_URL" in lines[0]
    assert "in-memory" in floodwall.actions.store_description


def limited(reset_after: float = 10.0) -> Decision:
    return Decision(
        outcome=Outcome.LIMITED,
        rate=1.0,
        burst=1,
        remaining=0,
        retry_after=reset_after,
        reset_after=reset_after,
    )


def test_an_answer_given_before_an_operators_change_is_not_cached_after_it() -> None:
    clock = FakeClock(100.0)
    cache = DenyCache(clock=clock)
    asked_at = clock()
    clock.advance(0.01)
    cache.forget("k")  # the unblock's message arrives before the old answer
    clock.advance(0.01)
    cache.remember("k", limited(), asked_at)
    assert cache.lookup("k", 1) is None
    cache.remember("k", limited(), clock())  # asked after the change: cached
    assert cache.lookup("k", 1) is not None
    cache.clear()
    cache.remember("other", limited(), asked_at)
    assert cache.lookup("other", 1) is None


def test_a_block_without_end_is_kept_and_a_timed_one_ends_by_our_monotonic_clock() -> None:
    clock = FakeClock(100.0)
    cache = DenyCache(clock=clock)
    forever = Decision(
        outcome=Outcome.BLOCKED, rate=1.0, burst=1, remaining=0, retry_after=0, reset_after=0
    )
    # Ends 1 s after the store answered, whatever this server's wall clock says.
    timed = forever._replace(retry_after=1.0, blocked_until=5.0)
    cache.remember("forever", forever, clock())
    cache.remember("timed", timed, clock())
    clock.advance(0.9)
    assert cache.lookup("forever", 1) is forever
    assert cache.lookup("timed", 1) is timed
    clock.advance(0.2)
    assert cache.lookup("timed", 1) is None
    clock.advance(3600)
    assert cache.lookup("forever", 1) is forever
    cache.forget("forever")
    assert cache.lookup("forever", 1) is None


def test_a_refusal_lapses_before_a_fast_store_clock_would_end_it() -> None:
    clock = FakeClock(100.0)
    cache = DenyCache(clock=clock)
    cache.remember("k", limited(reset_after=1.0), clock())
    # The store's clock slewing 8 % fast ends the refusal after 0.926 s of ours.
    clock.advance(0.92)
    assert cache.lookup("k", 1) is None


async def test_block_unblock_cycles_leave_no_stale_refusal_on_two_workers(
    redis_server: RedisServer,
) -> None:
    settings = FloodwallSettings(
        redis_url=redis_server.url, user_header="x-user", key_prefix="cycles"
    )
    workers = [Floodwall(settings), Floodwall(settings)]
    clients = []
    for floodwall in workers:
        app = FloodwallMiddleware(Starlette(routes=[Route("/", _ok)]), floodwall=floodwall)
        clients.append(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w")
        )
        await floodwall.start()
        await asyncio.wait_for(floodwall.following.wait(), 5)
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    try:

        async def traffic(client: httpx.AsyncClient) -> None:
            for _ in range(300):
                await client.get("/", headers={"x-user": "victim"})

        async def cycles() -> None:
            for n in range(1000):
                acting = workers[n % 2]
                await acting.block("victim", reason="cycle")
                await acting.unblock("victim")

        await asyncio.gather(cycles(), *(traffic(c) for c in clients))
        await asyncio.sleep(1.0)
        for client in clients:
            answers = [
                (await client.get("/", headers={"x-user": "victim"})).status_code for _ in range(3)
            ]
            assert 403 not in answers, answers
    finally:
        for client in clients:
            await client.aclose()
        for floodwall in workers:
            await floodwall.stop()
        await raw.aclose()


async def test_a_block_answered_before_an_unblock_is_not_cached_after_it(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = FloodwallSettings(redis_url=redis_server.url, key_prefix="race")
    acting, serving = Floodwall(settings), Floodwall(settings)
    await serving.start()
    await asyncio.wait_for(serving.following.wait(), 5)
    try:
        await acting.block("victim", reason="race")
        await wait_until_async(
            lambda: (
                (user := serving.mirror.get("victim")) is not None
                and user.kill_switch.blocked_until_ms is not None
            ),
            "the block reaches the serving worker",
            within=2,
        )
        # Redis answers the check before the unblock, but the answer reaches the worker
        # only after the unblock's message did (a slow network, a busy event loop).
        unblock_seen = asyncio.Event()
        check = serving.store.check

        async def late_answer(*args: object, **kwargs: object) -> Decision:
            decision = await check(*args, **kwargs)  # type: ignore[arg-type]
            await unblock_seen.wait()
            return decision

        monkeypatch.setattr(serving.store, "check", late_answer)
        in_flight = asyncio.create_task(serving.check(Identity("victim")))
        await asyncio.sleep(0.05)
        await acting.unblock("victim")
        await wait_until_async(
            lambda: serving.mirror.get("victim") is None,
            "the unblock reaches the serving worker",
            within=2,
        )
        unblock_seen.set()
        assert (await in_flight).outcome is Outcome.BLOCKED
        monkeypatch.setattr(serving.store, "check", check)
        assert (await serving.check(Identity("victim"))).allowed
    finally:
        await acting.stop()
        await serving.stop()


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def test_an_ended_auto_block_leaves_every_mirror_after_its_window() -> None:
    clock = FakeClock()
    settings = FloodwallSettings(
        rate=0.01, burst=1, auto_block_refusals=2, auto_block_max_seconds=600
    )
    floodwall = Floodwall(
        settings, store=MemoryStore(clock=clock), clock=Clock(wall=clock, monotonic=clock)
    )
    try:
        for _ in range(5):
            await floodwall.check(Identity("mallory"))
        await floodwall.offenders.stop()
        assert (await floodwall.status("mallory")).blocked
        await floodwall.block("held", reason="manual", ttl_seconds=60)
        clock.advance(301)  # the auto-block (300 s) and the manual one have ended
        await floodwall.resync()
        assert floodwall.mirror.get("held") is None
        # Mallory's offence count is kept while it can still escalate.
        assert floodwall.mirror.get("mallory") is not None
        clock.advance(600)
        await floodwall.resync()
        assert floodwall.mirror.get("mallory") is None
        assert (await floodwall.blocked())[0] == []
        assert await floodwall.store.list_users(Listing.USERS, after=None, count=10) == []
    finally:
        await floodwall.stop()


@pytest.mark.parametrize(
    "protection",
    [{}, {"capacity": 8, "tarpit_seconds": 0.5}],
    ids=["limits", "with-shedding-and-tarpit"],
)
async def test_a_flood_of_huge_distinct_ids_costs_bounded_memory(
    protection: dict[str, Any],
) -> None:
    floodwall = Floodwall(FloodwallSettings(user_header="x-user", rate=0.01, burst=1, **protection))
    app = FloodwallMiddleware(Starlette(routes=[Route("/", _ok)]), floodwall=floodwall)

    async def request(user: bytes) -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "headers": [(b"x-user", user)],
            "client": ("10.0.0.1", 1234),
        }

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b""}

        async def send(message: object) -> None:
            return None

        await app(scope, receive, send)

    await request(b"warm-up")
    gc.collect()
    before = _resident_bytes()
    for n in range(10_000):
        huge = f"{n:05d}".encode() + b"x" * 15_000
        assert len(huge) > MAX_HELD
        await request(huge)  # allowed
        await request(huge)  # refused: counted for top, the log and auto-block
    gc.collect()
    grown = _resident_bytes() - before
    await floodwall.stop()
    assert grown < 10 * 1024 * 1024, f"{grown / 2**20:.1f} MiB"


def _resident_bytes() -> int:
    # Resident memory of this process, as an operator would watch the worker's.
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def test_with_no_clock_the_mirror_answers_only_what_holds_in_check_luas_order() -> None:
    mirror = KillSwitchMirror()
    state = {"user_id": "mallory", "not_before": "1000", "reset_required": "1"}
    mirror.update("mallory", StateSnapshot(state | {"blocked_until": "5000"}, 0, {}).user_state())
    old = Identity("mallory", issued_at=0.5)
    # A timed block ranks first, and whether it still holds needs a clock.
    assert mirror.refusal(old, False, None) is None
    assert mirror.refusal(old, False, 4000) is Outcome.BLOCKED
    assert mirror.refusal(old, False, 6000) is Outcome.REVOKED
    mirror.update("mallory", StateSnapshot(state | {"blocked_until": "0"}, 0, {}).user_state())
    assert mirror.refusal(old, False, None) is Outcome.BLOCKED
    mirror.update("mallory", StateSnapshot(state, 0, {"c-1": 9000}).user_state())
    assert mirror.refusal(old, False, None) is Outcome.REVOKED
    # A credential revoked by id until a time: no answer without a clock.
    fresh = Identity("mallory", issued_at=2.0, credential_id="c-1")
    assert mirror.refusal(fresh, False, None) is None
    assert mirror.refusal(fresh, False, 8000) is Outcome.REVOKED
    assert mirror.refusal(Identity("mallory", issued_at=2.0), False, None) is (
        Outcome.RESET_REQUIRED
    )
    assert mirror.refusal(Identity("mallory", issued_at=2.0), True, None) is None
