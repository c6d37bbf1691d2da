"""The local Cosmos DB server answers as Cosmos DB does where the app depends on it, checked
through the azure-cosmos SDK's own calls: transactional batches are atomic (all or nothing, the
failing operation's status and 424 for the others, as the SDK's CosmosBatchOperationError
expects), and a point read of a missing item is a 404."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from devhost.emulators import Emulators, provision
from tests.integration.conftest import DATABASE

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def container(emulators: Emulators) -> AsyncIterator[Any]:
    from azure.cosmos.aio import CosmosClient

    name = f"b{uuid.uuid4().hex[:12]}"
    await provision(azurite=emulators.azurite_connection_string, cosmos=emulators.cosmos_connection_string,
                    database=DATABASE, containers={name: "/streamId"}, blob_containers=[])
    client = CosmosClient.from_connection_string(emulators.cosmos_connection_string, connection_verify=False,
                                                 enable_endpoint_discovery=False)
    yield client.get_database_client(DATABASE).get_container_client(name)
    await client.close()


async def ids_in(container: Any, stream: str) -> list[str]:
    query = "SELECT * FROM c WHERE c.streamId = @s"
    return sorted([item["id"] async for item in container.query_items(query, parameters=[{"name": "@s", "value": stream}],
                                                                        partition_key=stream)])


async def test_a_batch_that_succeeds_writes_every_operation(container: Any) -> None:
    results = await container.execute_item_batch([("create", ({"id": "s:1", "streamId": "s", "n": 1},)),
                                                  ("create", ({"id": "s:2", "streamId": "s", "n": 2},)),
                                                  ("upsert", ({"id": "s:snap", "streamId": "s", "n": 2},))],
                                                 partition_key="s")
    assert [r["statusCode"] for r in results] == [201, 201, 201]
    assert await ids_in(container, "s") == ["s:1", "s:2", "s:snap"]


async def test_a_failing_operation_undoes_the_ones_before_it(container: Any) -> None:
    from azure.cosmos.exceptions import CosmosBatchOperationError

    await container.execute_item_batch([("create", ({"id": "s:1", "streamId": "s", "n": 1},)),
                                        ("upsert", ({"id": "s:snap", "streamId": "s", "n": 1},))], partition_key="s")
    with pytest.raises(CosmosBatchOperationError) as caught:
        await container.execute_item_batch([("create", ({"id": "s:2", "streamId": "s", "n": 2},)),
                                            ("upsert", ({"id": "s:snap", "streamId": "s", "n": 2},)),
                                            ("replace", ("s:1", {"id": "s:1", "streamId": "s", "n": 99})),
                                            ("create", ({"id": "s:1", "streamId": "s", "n": 3},))],
                                           partition_key="s")
    error = caught.value
    assert (error.status_code, error.error_index) == (409, 3)
    assert [r["statusCode"] for r in error.operation_responses] == [424, 424, 424, 409]
    # Nothing of the failed batch remains: no s:2, and the upserted and replaced items are as they were.
    assert await ids_in(container, "s") == ["s:1", "s:snap"]
    assert (await container.read_item("s:snap", partition_key="s"))["n"] == 1
    assert (await container.read_item("s:1", partition_key="s"))["n"] == 1


async def test_a_failed_delete_in_a_batch_restores_the_deleted_item(container: Any) -> None:
    from azure.cosmos.exceptions import CosmosBatchOperationError

    await container.create_item({"id": "s:1", "streamId": "s", "n": 1})
    with pytest.raises(CosmosBatchOperationError) as caught:
        await container.execute_item_batch([("delete", ("s:1",)), ("read", ("s:missing",))], partition_key="s")
    assert caught.value.status_code == 404
    assert (await container.read_item("s:1", partition_key="s"))["n"] == 1
    # The restored item is whole: it can be replaced and deleted as before.
    await container.replace_item("s:1", {"id": "s:1", "streamId": "s", "n": 2})
    await container.delete_item("s:1", partition_key="s")
    assert await ids_in(container, "s") == []


async def test_a_point_read_of_a_missing_item_is_404(container: Any) -> None:
    from azure.cosmos.exceptions import CosmosResourceNotFoundError

    with pytest.raises(CosmosResourceNotFoundError):
        await container.read_item("nothing", partition_key="s")
