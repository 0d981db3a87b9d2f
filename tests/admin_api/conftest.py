"""The admin API tests' fixtures: a Floodwall on the store under test, an admin client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from floodwall import Floodwall, Store

from .support import AUTH, client_for, settings


@pytest.fixture
def floodwall(store: Store) -> Floodwall:
    return Floodwall(settings(), store=store)


@pytest.fixture
async def client(floodwall: Floodwall) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(floodwall, AUTH) as admin:
        yield admin
