"""The admin API against its own OpenAPI document, with schemathesis (in-process, ASGI).

Schemathesis reads ``/openapi.json`` from the app itself and generates requests for every
operation, valid and invalid ones, all with a valid admin token. Every response must be
no server error, and must conform to the document: a documented status code, the
documented content type and a body matching the documented schema. The in-memory store
keeps it fast; state accumulates across examples, so the listings grow as it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import schemathesis
from admin_api.support import DESIGN_ROUTES
from hypothesis import settings
from pydantic import SecretStr
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from floodwall import Floodwall, FloodwallSettings, MemoryStore

TOKEN = "schemathesis-admin-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# The operation type parameter of Case is schemathesis-internal: Any stays inside this alias.
AdminCase = schemathesis.Case[Any]
CaseTest = Callable[[AdminCase], None]

# The routes of the design's table ("Admin API"), but the document itself.
FUZZED_ROUTES = DESIGN_ROUTES - {("GET", "/openapi.json")}


def _seeded_floodwall() -> Floodwall:
    """A service whose listings and statuses have something in them from the start."""
    floodwall = Floodwall(
        FloodwallSettings(admin_token=SecretStr(TOKEN), admin_tokens={}, rate=10.0, burst=10),
        store=MemoryStore(),
    )

    async def seed() -> None:
        for index in range(5):
            await floodwall.block(f"seed-{index}", reason="seeded", actor="seed")
        await floodwall.block("seed-ttl", reason="seeded", ttl_seconds=3600, actor="seed")
        await floodwall.require_password_reset("seed-reset", reason="seeded", actor="seed")
        await floodwall.set_limit("seed-limit", rate=0.5, burst=2, actor="seed")
        await floodwall.revoke_credential("seed-jti", "jti-1", actor="seed", reason="seeded")

    asyncio.run(seed())
    return floodwall


FLOODWALL = _seeded_floodwall()
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", FLOODWALL.admin_app(), headers=HEADERS)
# schemathesis types its decorator as a bare Callable; give it the shape it has.
parametrize: Callable[[CaseTest], CaseTest] = SCHEMA.parametrize()


def test_every_route_of_the_document_is_fuzzed() -> None:
    fuzzed: set[tuple[str, str]] = set()
    for result in SCHEMA.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        fuzzed.add((operation.method.upper(), operation.path))
    documented = {
        (method.upper(), path)
        for path, operations in SCHEMA.raw_schema["paths"].items()
        for method in operations
    }
    # schemathesis leaves out the document it was loaded from.
    assert fuzzed == documented - {("GET", "/openapi.json")}
    assert FUZZED_ROUTES - fuzzed == set()


@parametrize
@settings(max_examples=25, deadline=None)
def test_admin_api_conforms_to_its_openapi_document(case: AdminCase) -> None:
    case.call_and_validate(headers=HEADERS, checks=CHECKS)
