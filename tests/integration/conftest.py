"""Emulators for the integration tests, started once per session on free ports and stopped after."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from common import clients
from devhost.emulators import Emulators, provision
from tests.conftest import set_env

DATABASE = "itest"


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    data_dir: Path = tmp_path_factory.mktemp("emulators")
    with Emulators.start(data_dir) as running:
        asyncio.run(provision(azurite=running.azurite_connection_string, cosmos=running.cosmos_connection_string,
                              database=DATABASE, containers={}, blob_containers=["incoming", "summaries"]))
        yield running


@pytest_asyncio.fixture
async def app_env(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Emulators]:
    """App settings pointing at the emulators; the app's clients are closed after the test."""
    set_env(monkeypatch, EtlStorage=emulators.azurite_connection_string,
            CosmosConnection=emulators.cosmos_connection_string, COSMOS_DATABASE=DATABASE)
    yield emulators
    await clients.close_all()


async def new_container(emulators: Emulators, partition_key_path: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh Cosmos container with that partition key path; the app is pointed at it."""
    name = f"c{uuid.uuid4().hex[:12]}"
    await provision(azurite=emulators.azurite_connection_string, cosmos=emulators.cosmos_connection_string,
                    database=DATABASE, containers={name: partition_key_path}, blob_containers=[])
    set_env(monkeypatch, COSMOS_CONTAINER=name)
    return name


@contextlib.asynccontextmanager
async def orders_on(emulators: Emulators, monkeypatch: pytest.MonkeyPatch, folder: Path) -> AsyncIterator[Any]:
    """An OrdersClient (tests/integration/orders_client.py) over fresh order containers on
    ``emulators``, AUTH_MODE=entra against a loopback issuer that signs for two tenants."""
    from devhost.emulators import free_port
    from devhost.issuer import DEFAULT_AUDIENCE, LocalIssuer, serve
    from tests.integration.orders_client import OTHER_TENANT, OrdersClient

    suffix = uuid.uuid4().hex[:10]
    events, keys = f"ev{suffix}", f"ik{suffix}"
    await provision(azurite=emulators.azurite_connection_string, cosmos=emulators.cosmos_connection_string,
                    database=DATABASE, containers={events: "/streamId", keys: "/id"}, blob_containers=[])
    port = free_port()
    issuer = LocalIssuer.from_key_file(folder / "key.pem", f"http://127.0.0.1:{port}")
    runner = await serve(issuer, port)
    set_env(monkeypatch, CosmosConnection=emulators.cosmos_connection_string, COSMOS_DATABASE=DATABASE,
            ORDERS_EVENTS_CONTAINER=events, ORDERS_IDEMPOTENCY_CONTAINER=keys, ORDERS_SNAPSHOT_EVERY="10",
            AUTH_MODE="entra", AUTH_TENANT_ID=issuer.tenant, AUTH_AUDIENCE=DEFAULT_AUDIENCE,
            AUTH_ISSUER=f"{issuer.issuer},{issuer.issuer_for(OTHER_TENANT)}",
            AUTH_ALLOWED_TENANTS=f"{issuer.tenant},{OTHER_TENANT}", AUTH_JWKS_URL=issuer.jwks_url)
    try:
        yield OrdersClient(issuer)
    finally:
        await clients.close_all()
        await runner.cleanup()


@pytest_asyncio.fixture
async def orders(emulators: Emulators, monkeypatch: pytest.MonkeyPatch,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """The orders API on the session's emulators (:func:`orders_on`)."""
    async with orders_on(emulators, monkeypatch, tmp_path_factory.mktemp("issuer")) as client:
        yield client
