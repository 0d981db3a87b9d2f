"""The stores' capabilities in domain terms, proven alike on MemoryStore, fakeredis and a
real redis-server: a user's state read back typed, the listings kept in step by the store,
network blocks, the audit trail and the run-time settings."""

from __future__ import annotations

import pytest
from conftest import write_state_fields

from floodwall import Floodwall, FloodwallSettings
from floodwall.core.audit import AuditAction
from floodwall.core.decision import Outcome
from floodwall.core.network_block import NetworkBlock
from floodwall.core.user_state import Listing
from floodwall.stores import Store


async def listed(store: Store, listing: Listing) -> list[str]:
    return await store.list_users(listing, after=None, count=100)


async def test_a_block_reads_back_typed_and_is_listed(store: Store) -> None:
    state = await store.block("mallory", reason="INC-1", actor="ops", ttl_ms=60_000)
    assert state.kill_switch.blocked(state.now_ms)
    assert state.kill_switch.blocked_until_ms == state.now_ms + 60_000
    assert (state.reason, state.blocked_by, state.blocked_at_ms) == ("INC-1", "ops", state.now_ms)
    assert await listed(store, Listing.BLOCKED) == ["mallory"]
    assert await listed(store, Listing.USERS) == ["mallory"]
    read = await store.read_user("mallory")
    assert read.kill_switch == state.kill_switch
    assert read.stored

    unblocked = await store.unblock("mallory")
    assert unblocked.kill_switch.blocked_until_ms is None
    assert not unblocked.stored
    assert await listed(store, Listing.BLOCKED) == []
    # Nothing left of the user: no resync needs to read them.
    assert await listed(store, Listing.USERS) == []


async def test_a_block_without_end_and_auto_blocks_count(store: Store) -> None:
    state = await store.block("eve", reason="r", actor="auto-block", ttl_ms=None, offences=3)
    assert state.kill_switch.blocked_until_ms == 0
    assert state.auto_offences == 3
    assert state.kill_switch.blocked(state.now_ms + 10**9)


async def test_a_user_with_revoked_ids_only_stays_listed(store: Store) -> None:
    now_ms = await store.now_ms()
    state = await store.revoke_credential(
        "bob", credential_id="jti-1", expires_at_ms=now_ms + 10**6
    )
    assert state.revoked == {"jti-1": now_ms + 10**6}
    assert not state.stored
    await store.set_shadow("bob", True)
    await store.set_shadow("bob", False)
    assert await listed(store, Listing.USERS) == ["bob"]


async def test_revocations_and_resets(store: Store) -> None:
    revoked = await store.revoke("carol")
    assert revoked.kill_switch.not_before_ms == revoked.now_ms
    reset = await store.require_reset("carol", reset_id="r-1")
    assert reset.kill_switch.reset_required
    assert reset.pending_reset == "r-1"
    assert await store.claim_reset("carol", reset_id="r-1", claim=True)
    assert not await store.claim_reset("carol", reset_id="r-1", claim=True)
    assert (await store.read_user("carol")).pending_reset is None
    cleared = await store.clear_reset("carol")
    assert not cleared.kill_switch.reset_required
    assert cleared.reset_id is None


async def test_a_users_own_limits_read_back_typed(store: Store) -> None:
    await store.set_limit("dan", (2.5, 4))
    await store.set_shadow("dan", True)
    await store.set_route_limit("dan", "POST /login", (3, 60_000_000))
    state = await store.set_concurrency("dan", 2)
    assert state.limit == (2.5, 4)
    assert state.shadow
    assert state.route_limits == {"POST /login": (3, 60_000_000)}
    assert state.concurrency == 2
    await store.set_limit("dan", None)
    await store.set_route_limit("dan", "POST /login", None)
    state = await store.set_concurrency("dan", None)
    assert (state.limit, state.route_limits, state.concurrency) == (None, {}, None)


async def test_an_ended_block_lapses_unless_it_changed(store: Store) -> None:
    await write_state_fields(store, "frank", {"blocked_until": "1", "reason": "old"})
    read = await store.read_user("frank")
    assert read.stored
    assert not read.kill_switch.blocked(read.now_ms)
    await store.unlist(Listing.USERS, "frank")
    left = await store.lapse_block("frank", read)
    assert left is not None
    assert not left.stored
    assert not (await store.read_user("frank")).stored

    await write_state_fields(store, "grace", {"blocked_until": "1", "shadow": "1"})
    read = await store.read_user("grace")
    await store.block("grace", reason="again", actor="ops", ttl_ms=None)
    assert await store.lapse_block("grace", read) is None
    assert (await store.read_user("grace")).reason == "again"


async def test_many_users_blocked_at_once(store: Store) -> None:
    results = await store.block_many(["u1", "u2"], reason="r", actor="ops", ttl_ms=None)
    assert [not isinstance(r, Exception) and r.kill_switch.blocked_until_ms for r in results] == [
        0,
        0,
    ]
    assert await listed(store, Listing.BLOCKED) == ["u1", "u2"]
    assert await listed(store, Listing.USERS) == ["u1", "u2"]
    states = await store.read_users(["u1", "nobody"])
    assert [state.reason for state in states] == ["r", None]


async def test_network_blocks_read_back_typed(store: Store) -> None:
    block = NetworkBlock("192.0.2.0/24", "INC-2", "ops", 1, None)
    await store.write_network("192.0.2.0/24", block)
    assert await store.read_network("192.0.2.0/24") == block
    assert await store.read_networks() == {"192.0.2.0/24": block}
    await store.write_network("192.0.2.0/24", None)
    assert await store.read_network("192.0.2.0/24") is None


async def test_the_audit_trail_reads_back_typed(store: Store) -> None:
    first = AuditAction(1, "ops", "set-default-limit", None, detail="rate=1.0 burst=2")
    second = AuditAction(2, "ops", "block", "", reason="r", expires_ms=9)
    ids = [await store.append_audit(first, max_entries=10)]
    ids += await store.append_audits([second], max_entries=10)
    records = await store.read_audit(before=None, count=10)
    assert [record.id for record in records] == ids[::-1]
    assert [(r.action, r.user_id, r.reason, r.expires_ms, r.detail) for r in records] == [
        ("block", "", "r", 9, None),
        ("set-default-limit", None, None, None, "rate=1.0 burst=2"),
    ]


async def test_the_run_time_settings_read_back_typed(store: Store) -> None:
    settings = await store.read_live_settings()
    assert settings.default_limit is None
    assert not settings.default_limit_unreadable
    await store.set_default_limit((0.5, 3))
    await store.set_route_default("GET /export", (1, 10_000_000))
    await store.publish_app_routes("digest", "routes")
    settings = await store.read_live_settings()
    assert settings.default_limit == (0.5, 3)
    assert settings.route_limits == {"GET /export": (1, 10_000_000)}
    assert settings.limited_routes == {"GET /export"}
    assert list(settings.published_routes) == ["routes"]
    await store.set_default_limit(None)
    await store.set_route_default("GET /export", None)
    settings = await store.read_live_settings()
    assert (settings.default_limit, settings.route_limits) == (None, {})


@pytest.mark.parametrize("extra", [{"auto_offences": "x"}, {"colour": "red"}])
async def test_a_block_keeps_only_auto_blocks_count_beside_its_reason(
    store: Store, extra: dict[str, str]
) -> None:
    floodwall = Floodwall(FloodwallSettings(), store=store)
    with pytest.raises(ValueError, match="auto_offences"):
        await floodwall.actions.block("mallory", reason="r", extra=extra)
    assert not (await store.read_user("mallory")).stored


async def test_every_change_of_the_kill_switch_reaches_the_next_check(store: Store) -> None:
    keys = store.keys.user("mallory")

    async def outcome() -> Outcome:
        return (await store.check(keys, rate=100, burst=100)).outcome

    assert await outcome() is Outcome.ALLOWED
    await store.block("mallory", reason="r", actor="ops", ttl_ms=None)
    assert await outcome() is Outcome.BLOCKED
    await store.unblock("mallory")
    assert await outcome() is Outcome.ALLOWED
    await store.require_reset("mallory", reset_id="r-1")
    assert await outcome() is Outcome.RESET_REQUIRED
    await store.clear_reset("mallory")
    assert await outcome() is Outcome.ALLOWED
    await write_state_fields(store, "mallory", {"blocked_until": "1"})
    assert await outcome() is Outcome.ALLOWED
    await store.block("mallory", reason="r", actor="ops", ttl_ms=60_000)
    assert await outcome() is Outcome.BLOCKED
