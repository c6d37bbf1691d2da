"""Emulators for the integration tests, started once per session on free ports and stopped after."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

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
