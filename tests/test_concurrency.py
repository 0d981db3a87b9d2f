"""Per-user concurrency: at most N requests of one user in flight across every worker,
taken in the check's one round trip, given back when a request ends, and never leaked by a
crashed worker. On the memory store, fakeredis and a real redis-server alike."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from conftest import FakeClock
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings, Identity, Outcome
from floodwall.core.decision import Decision
from floodwall.stores import RedisStore, Store
from floodwall.stores.base import LEASE_MS
from floodwall.stores.keys import Keys
from harness import RedisServer, client_commands

KEYS = Keys("floodwall")
ALICE = KEYS.user("alice")


async def take(store: Store, limit: int | None = 2) -> Decision:
    return await store.check(ALICE, rate=1000, burst=1000, concurrency=limit)


async def test_at_most_n_in_flight_and_a_release_frees_one(store: Store) -> None:
    first = await take(store)
    second = await take(store)
    assert (first.outcome, second.outcome) == (Outcome.ALLOWED, Outcome.ALLOWED)
    # Each holds a slot of its own.
    assert first.lease
    assert second.lease
    assert first.lease != second.lease
    refused = await take(store)
    assert refused.outcome is Outcome.CONCURRENCY_EXCEEDED
    assert refused.retry_after == 1.0
    assert refused.lease == ""
    # A refused request took no token either: all or nothing.
    assert refused.remaining == 0
    await store.release(ALICE, first.lease)
    assert (await take(store)).allowed
    # Another user has slots of their own.
    bob = await store.check(KEYS.user("bob"), rate=1000, burst=1000, concurrency=2)
    assert bob.allowed


async def test_no_limit_holds_no_slot(store: Store) -> None:
    decisions = [await take(store, limit=None) for _ in range(5)]
    assert [(d.allowed, d.lease) for d in decisions] == [(True, "")] * 5


async def test_a_users_own_limit_wins_and_holds_without_a_default(store: Store) -> None:
    await store.set_concurrency("alice", 1)
    held = await take(store, limit=5)
    assert held.allowed
    assert held.lease
    assert (await take(store, limit=5)).outcome is Outcome.CONCURRENCY_EXCEEDED
    # Where no default is configured, the user's own limit applies all the same.
    assert (await take(store, limit=None)).outcome is Outcome.CONCURRENCY_EXCEEDED
    await store.release(ALICE, held.lease)
    assert (await take(store, limit=None)).allowed


async def test_a_lease_not_renewed_ends_and_a_renewed_one_holds(
    clocked_store: Store, clock: FakeClock
) -> None:
    lease = LEASE_MS / 1000
    held = await take(clocked_store)
    assert held.allowed
    assert (await take(clocked_store)).allowed  # a crashed worker's
    clock.advance(lease * 2 / 3)
    await clocked_store.renew([(ALICE, held.lease)], LEASE_MS)
    clock.advance(lease / 2)  # the crashed worker's lease ended; the held one was renewed
    assert (await take(clocked_store)).allowed
    assert (await take(clocked_store)).outcome is Outcome.CONCURRENCY_EXCEEDED


async def test_requests_of_one_instant_hold_distinct_slots(
    clocked_store: Store, clock: FakeClock
) -> None:
    # The store's clock stands still: the leases still differ, also after a release.
    first, second = await take(clocked_store, 3), await take(clocked_store, 3)
    await clocked_store.release(ALICE, first.lease)
    third = await take(clocked_store, 3)
    assert third.allowed
    assert len({second.lease, third.lease}) == 2
    await clocked_store.release(ALICE, second.lease)
    await clocked_store.release(ALICE, third.lease)
    assert [(await take(clocked_store, 3)).allowed for _ in range(4)] == [True] * 3 + [False]


async def test_two_hundred_acquisitions_across_two_instances_admit_exactly_n(
    redis_server: RedisServer,
) -> None:
    settings = FloodwallSettings(
        redis_url=redis_server.url, key_prefix="conc-exact", concurrency=7, redis_timeout=2
    )
    instances = [Floodwall(settings), Floodwall(settings)]
    for floodwall in instances:
        await floodwall.start()
    try:
        decisions = await asyncio.gather(
            *(instances[n % 2].check(Identity("crowd")) for n in range(200))
        )
        admitted = [d for d in decisions if d.allowed]
        assert len(admitted) == 7
        assert {d.outcome for d in decisions if not d.allowed} == {Outcome.CONCURRENCY_EXCEEDED}
        for n, decision in enumerate(decisions):
            if decision.allowed:
                instances[n % 2].checker.release(decision)
        for floodwall in instances:
            await floodwall.checker.settle_releases()
        assert (await instances[0].check(Identity("crowd"))).allowed
    finally:
        for floodwall in instances:
            await floodwall.stop()


# A worker that takes two slots and dies without giving them back (SIGKILL), on a lease of
# one second so the test need not wait a minute.
CRASHING_WORKER = """
import asyncio, os, signal, sys
import floodwall.limiting.checker
from floodwall import Floodwall, FloodwallSettings, Identity

floodwall.limiting.checker.LEASE_MS = 1000

async def main(url):
    fw = Floodwall(FloodwallSettings(redis_url=url, key_prefix="conc-crash", concurrency=2))
    for _ in range(2):
        assert (await fw.check(Identity("victim"))).allowed
    print("holding", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main(sys.argv[1]))
"""


async def test_a_killed_workers_slots_end_with_their_lease(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    worker = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHING_WORKER, redis_server.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert worker.stdout.strip() == "holding", worker.stderr
    assert worker.returncode == -9
    survivor = Floodwall(
        FloodwallSettings(redis_url=redis_server.url, key_prefix="conc-crash", concurrency=2)
    )
    try:
        refused = await survivor.check(Identity("victim"))
        assert refused.outcome is Outcome.CONCURRENCY_EXCEEDED
        await asyncio.sleep(1.2)
        assert (await survivor.check(Identity("victim"))).allowed
    finally:
        await survivor.stop()


def _app(floodwall: Floodwall, started: asyncio.Event, finish: asyncio.Event) -> Any:
    async def slow(request: Request) -> PlainTextResponse:
        started.set()
        await finish.wait()
        if request.query_params.get("fail"):
            raise RuntimeError("the handler failed")
        return PlainTextResponse("done")

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await finish.wait()
        await websocket.close()

    app = Starlette(routes=[Route("/slow", slow), WebSocketRoute("/ws", socket)])
    return FloodwallMiddleware(app, floodwall=floodwall)


async def test_slots_are_held_for_the_whole_request_and_given_back_after_it() -> None:
    floodwall = Floodwall(
        FloodwallSettings(user_header="x-user", concurrency=2, rate=1000, burst=1000)
    )
    started, finish = asyncio.Event(), asyncio.Event()
    app = _app(floodwall, started, finish)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    user = {"x-user": "slowpoke"}
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        holding = [asyncio.create_task(http.get("/slow", headers=user)) for _ in range(2)]
        await started.wait()
        await asyncio.sleep(0.01)
        refused = await http.get("/slow", headers=user)
        assert refused.status_code == 429
        assert refused.json()["type"] == "urn:floodwall:problem:concurrency-exceeded"
        assert refused.headers["retry-after"] == "1"
        # Another user has slots of their own.
        other = asyncio.create_task(http.get("/slow", headers={"x-user": "other"}))
        await asyncio.sleep(0.05)
        finish.set()
        assert [(await t).status_code for t in holding] == [200, 200]
        assert (await other).status_code == 200
        await floodwall.checker.settle_releases()
        failing = await http.get("/slow?fail=1", headers=user)
        assert failing.status_code == 500
        await floodwall.checker.settle_releases()
        # Both slots are free again, after a success and after a failure.
        finish.clear()
        again = [asyncio.create_task(http.get("/slow", headers=user)) for _ in range(2)]
        await asyncio.sleep(0.05)
        finish.set()
        assert [(await t).status_code for t in again] == [200, 200]
    await floodwall.stop()


async def test_a_users_own_limit_applies_where_no_default_is_set(
    redis_server: RedisServer,
) -> None:
    # Two workers without FLOODWALL_CONCURRENCY; an operator gives one user a limit of 1.
    settings = FloodwallSettings(
        redis_url=redis_server.url, user_header="x-user", key_prefix="conc-own", redis_timeout=2
    )
    operator, worker = Floodwall(settings), Floodwall(settings)
    await operator.start()
    await operator.set_concurrency("slowpoke", limit=1)
    started, finish = asyncio.Event(), asyncio.Event()
    app = _app(worker, started, finish)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            holding = asyncio.create_task(http.get("/slow", headers={"x-user": "slowpoke"}))
            await started.wait()
            refused = await http.get("/slow", headers={"x-user": "slowpoke"})
            assert refused.status_code == 429
            assert refused.json()["type"] == "urn:floodwall:problem:concurrency-exceeded"
            # Nobody else is limited in flight.
            others = [
                asyncio.create_task(http.get("/slow", headers={"x-user": "other"}))
                for _ in range(3)
            ]
            await asyncio.sleep(0.05)
            finish.set()
            assert (await holding).status_code == 200
            assert [(await t).status_code for t in others] == [200] * 3
            await worker.checker.settle_releases()
            finish.clear()
            again = asyncio.create_task(http.get("/slow", headers={"x-user": "slowpoke"}))
            await asyncio.sleep(0.05)
            finish.set()
            assert (await again).status_code == 200
    finally:
        await worker.stop()
        await operator.stop()


async def test_an_open_websocket_holds_a_slot() -> None:
    floodwall = Floodwall(FloodwallSettings(user_header="x-user", concurrency=1))
    started, finish = asyncio.Event(), asyncio.Event()
    app = _app(floodwall, started, finish)

    async def connect() -> tuple[list[dict[str, Any]], Callable[[], Awaitable[None]]]:
        sent: list[dict[str, Any]] = []
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "websocket.connect"})
        scope = {
            "type": "websocket",
            "path": "/ws",
            "raw_path": b"/ws",
            "query_string": b"",
            "headers": [(b"x-user", b"chatty")],
            "client": ("10.0.0.1", 1),
            "subprotocols": [],
        }

        async def send(message: Any) -> None:
            sent.append(message)

        task = asyncio.create_task(app(scope, inbox.get, send))

        async def close() -> None:
            await inbox.put({"type": "websocket.disconnect", "code": 1000})
            await task

        return sent, close

    first, close_first = await connect()
    await asyncio.sleep(0.05)
    assert first[0]["type"] == "websocket.accept"
    second, close_second = await connect()
    await asyncio.sleep(0.05)
    assert second[0] == {"type": "websocket.close", "code": 1008, "reason": ""}
    await close_second()
    finish.set()
    await close_first()
    await floodwall.checker.settle_releases()
    finish.clear()
    third, close_third = await connect()
    await asyncio.sleep(0.05)
    assert third[0]["type"] == "websocket.accept"
    finish.set()
    await close_third()
    await floodwall.stop()


async def test_an_anonymous_client_is_held_to_the_limit_by_its_address() -> None:
    floodwall = Floodwall(
        FloodwallSettings(user_header="x-user", concurrency=2, rate=1000, burst=1000)
    )
    started, finish = asyncio.Event(), asyncio.Event()
    app = _app(floodwall, started, finish)
    hog_transport = httpx.ASGITransport(app=app, client=("192.0.2.66", 40000))
    other_transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 40000))
    async with (
        httpx.AsyncClient(transport=hog_transport, base_url="http://app") as hog,
        httpx.AsyncClient(transport=other_transport, base_url="http://app") as other,
    ):
        holding = [asyncio.create_task(hog.get("/slow")) for _ in range(2)]
        await started.wait()
        await asyncio.sleep(0.01)
        try:
            # Not served: answered at once, or never while the others run.
            refused = await asyncio.wait_for(hog.get("/slow"), 5)
            assert refused.status_code == 429
            assert refused.json()["type"] == "urn:floodwall:problem:concurrency-exceeded"
            # Another address has slots of its own.
            elsewhere = asyncio.create_task(other.get("/slow"))
            await asyncio.sleep(0.05)
        finally:
            finish.set()
        assert [(await t).status_code for t in holding] == [200, 200]
        assert (await elsewhere).status_code == 200
    await floodwall.stop()


async def test_a_renewal_costs_two_commands_per_subject_in_flight(
    redis_server: RedisServer,
) -> None:
    # Its cost grows with the subjects holding slots on this worker, not with their
    # requests: each subject's leases are one ZADD, its key's lifetime one PEXPIRE.
    store = RedisStore.from_url(redis_server.url, prefix="renew", cluster=False, timeout=5)
    await store.start()
    try:
        subjects = [KEYS.user(f"renew-{n}") for n in range(3)]
        leases = []
        for n in range(30):
            keys = subjects[n % 3]
            decision = await store.check(keys, rate=1000, burst=1000, concurrency=100)
            leases.append((keys, decision.lease))
        now_ms = await store.now_ms()
        longer = 10 * LEASE_MS
        with client_commands(redis_server.port) as seen:
            await store.renew(leases, longer)
        assert sorted(seen) == ["PEXPIRE"] * 3 + ["TIME"] + ["ZADD"] * 3
        for keys in subjects:
            ends = await store.client.zrange(keys.inflight, 0, -1, withscores=True)
            assert len(ends) == 10
            assert min(float(end[1]) for end in ends) >= now_ms + longer
            assert await store.client.pttl(keys.inflight) > LEASE_MS
    finally:
        await store.close()
