"""The kill-switch rule has two copies, ``floodwall.core.killswitch`` (the memory store, the
mirror, a user's status) and ``stores/redis/lua/check.lua``: one table of cases runs through
the Python rule and through every store's check, so the copies cannot drift."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import pytest
from conftest import FakeClock, write_state_fields

from floodwall.core.decision import Outcome
from floodwall.core.killswitch import KillSwitch
from floodwall.stores import Store

# After any real clock this suite meets: revoke.lua drops ids that expired on Redis's own
# clock, and every expiry of the table must outlive it.
NOW_MS = 2_000_000_000_000
USER = "mallory"


class Case(NamedTuple):
    name: str
    fields: Mapping[str, str]
    expected: Outcome | None
    issued_at_ms: int | None = None
    credential_id: str | None = None
    reset_exempt: bool = False
    revoked: Mapping[str, int] = {}


CASES = [
    Case("no state", {}, None, issued_at_ms=NOW_MS - 10, credential_id="c-1"),
    Case("a block without end", {"blocked_until": "0"}, Outcome.BLOCKED),
    Case("a block without end written as 0.0", {"blocked_until": "0.0"}, Outcome.BLOCKED),
    Case("a block that holds", {"blocked_until": str(NOW_MS + 1)}, Outcome.BLOCKED),
    Case("a block that ends now", {"blocked_until": str(NOW_MS)}, None),
    Case("a block's end is read in whole ms", {"blocked_until": f"{NOW_MS}.5"}, None),
    Case("an unreadable block", {"blocked_until": "soon"}, None),
    Case("hex is no number", {"blocked_until": "0x0"}, None),
    Case("spaces are no number", {"blocked_until": " 0"}, None),
    Case("infinity is no time", {"blocked_until": "inf"}, None),
    Case("nor is an overflow", {"blocked_until": "1e999"}, None),
    Case(
        "an ended block leaves the reset",
        {"blocked_until": str(NOW_MS - 1), "reset_required": "1"},
        Outcome.RESET_REQUIRED,
    ),
    Case(
        "a credential issued before the revocation",
        {"not_before": str(NOW_MS)},
        Outcome.REVOKED,
        issued_at_ms=NOW_MS - 1,
    ),
    Case("a credential issued at the revocation", {"not_before": str(NOW_MS)}, None, NOW_MS),
    Case("a credential of unknown age", {"not_before": str(NOW_MS)}, None),
    Case("an unreadable revocation", {"not_before": "0x7fffffffffff"}, None, issued_at_ms=1),
    Case(
        "a block ranks before a revocation",
        {"blocked_until": "0", "not_before": str(NOW_MS)},
        Outcome.BLOCKED,
        issued_at_ms=1,
    ),
    Case(
        "a credential revoked by id",
        {},
        Outcome.REVOKED,
        credential_id="c-1",
        revoked={"c-1": NOW_MS + 1},
    ),
    Case("another credential", {}, None, credential_id="c-2", revoked={"c-1": NOW_MS + 1}),
    Case(
        "a revocation by id that has ended",
        {},
        None,
        credential_id="c-1",
        revoked={"c-1": NOW_MS},
    ),
    Case("a reset required", {"reset_required": "1"}, Outcome.RESET_REQUIRED),
    Case("the reset flow itself", {"reset_required": "1"}, None, reset_exempt=True),
    Case("a reset is required by 1 only", {"reset_required": "yes"}, None),
    Case(
        "a revocation by id ranks before a reset",
        {"reset_required": "1"},
        Outcome.REVOKED,
        credential_id="c-1",
        reset_exempt=True,
        revoked={"c-1": NOW_MS + 1},
    ),
    Case(
        "the reset flow still meets the block",
        {"reset_required": "1", "blocked_until": "0"},
        Outcome.BLOCKED,
        reset_exempt=True,
    ),
]
IDS = [case.name for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_python_rule(case: Case) -> None:
    kill_switch = KillSwitch.from_fields(case.fields, case.revoked)
    outcome = kill_switch.refusal(
        issued_at_ms=case.issued_at_ms,
        credential_id=case.credential_id,
        reset_exempt=case.reset_exempt,
        now_ms=NOW_MS,
    )
    assert outcome is case.expected


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_every_stores_check(case: Case, clocked_store: Store, clock: FakeClock) -> None:
    clock.now = NOW_MS / 1000
    if case.fields:
        await write_state_fields(clocked_store, USER, case.fields)
    for credential_id, expires_at_ms in case.revoked.items():
        await clocked_store.revoke_credential(
            USER, credential_id=credential_id, expires_at_ms=expires_at_ms
        )
    decision = await clocked_store.check(
        clocked_store.keys.user(USER),
        rate=10,
        burst=10,
        issued_at_ms=case.issued_at_ms,
        credential_id=case.credential_id,
        reset_exempt=case.reset_exempt,
    )
    assert decision.outcome is (Outcome.ALLOWED if case.expected is None else case.expected)
