"""The benchmark's request-unit budget (scripts/cosmos-server.js, COSMOS_RU_PER_SECOND): what it
charges, that it answers 429 with x-ms-retry-after-ms beyond the budget, and that the app loses
nothing when it does."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from devhost.emulators import Emulators, provision
from tests.conftest import FakeContext, set_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    with Emulators.start(tmp_path_factory.mktemp("ru"), cosmos_ru_per_second=200) as running:
        asyncio.run(provision(azurite=running.azurite_connection_string, cosmos=running.cosmos_connection_string,
                              database="ru", containers={"items": "/id"}, blob_containers=["incoming", "summaries"]))
        yield running


def charged_by(emulators: Emulators, operation) -> float:  # noqa: ANN001
    time.sleep(1.1)  # a full bucket: nothing below is throttled
    before = emulators.cosmos_stats()
    asyncio.run(operation())
    after = emulators.cosmos_stats()
    assert after["throttled"] == before["throttled"]
    return round(after["charged"] - before["charged"], 2)


def test_each_request_is_charged_what_cosmos_would_charge(budgeted: Emulators) -> None:
    from azure.cosmos.aio import CosmosClient

    def with_container(action):  # noqa: ANN001, ANN202
        async def run() -> None:
            async with CosmosClient.from_connection_string(budgeted.cosmos_connection_string, connection_verify=False,
                                                           enable_endpoint_discovery=False) as client:
                await action(client.get_database_client("ru").get_container_client("items"))
        return run

    small = {"id": "small", "v": "x" * 100}
    large = {"id": "large", "v": "x" * 3000}
    assert charged_by(budgeted, with_container(lambda c: c.upsert_item(small))) == 5.0
    charge = charged_by(budgeted, with_container(lambda c: c.upsert_item(large)))
    assert 14.5 < charge < 15.5, charge  # 5 RU per KB of body
    assert charged_by(budgeted, with_container(lambda c: c.read_item("small", partition_key="small"))) == 1.0
    assert charged_by(budgeted, with_container(lambda c: c.delete_item("small", partition_key="small"))) == 5.0

    async def query(container) -> None:  # noqa: ANN001
        assert [i async for i in container.query_items("SELECT VALUE c.id FROM c", max_item_count=10)] == ["large"]

    assert charged_by(budgeted, with_container(query)) == 3.0


def test_beyond_the_budget_the_answer_is_429_with_retry_after(budgeted: Emulators) -> None:
    import aiohttp

    async def burst() -> list[tuple[int, dict[str, str]]]:
        body = json.dumps({"id": "burst", "v": "x" * 900})
        url = f"https://127.0.0.1:{budgeted.cosmos_port}/dbs/ru/colls/items/docs"
        answers = []
        async with aiohttp.ClientSession() as session:
            for _ in range(60):
                async with session.post(url, data=body, ssl=False, headers={"content-type": "application/json"}) as r:
                    await r.read()
                    answers.append((r.status, dict(r.headers)))
        return answers

    time.sleep(1.1)
    answers = asyncio.run(burst())
    throttled = [headers for status, headers in answers if status == 429]
    # 200 RU in the bucket, 5 RU a request: about 40 pass, then the budget answers 429.
    assert 30 <= len(answers) - len(throttled) <= 50, len(throttled)
    first = throttled[0]
    assert first["x-ms-substatus"] == "3200"
    assert 1 <= int(first["x-ms-retry-after-ms"]) <= 25  # 5 RU at 200 RU/s: at most 25 ms away


async def test_the_etl_loses_nothing_when_cosmos_throttles(budgeted: Emulators, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import BlobEtl
    from common import clients
    from tests.integration.test_emulators_integration import blob_created, record

    set_env(monkeypatch, EtlStorage=budgeted.azurite_connection_string, CosmosConnection=budgeted.cosmos_connection_string,
            COSMOS_DATABASE="ru", COSMOS_CONTAINER="items")
    before = budgeted.cosmos_stats()
    data = json.dumps([record(i) for i in range(300)]).encode()
    try:
        service = clients.blob_service_client("EtlStorage")
        uploaded = await service.get_blob_client("incoming", "throttled.json").upload_blob(data, overwrite=True)
        with caplog.at_level(logging.INFO):
            await BlobEtl.main(blob_created("incoming/throttled.json", uploaded["etag"], len(data)),
                               FakeContext(function_name="BlobEtl"))
        summary = json.loads(await (await service.get_blob_client("summaries", "throttled.json.summary.json")
                                    .download_blob()).readall())
        seen_by_client = clients.cosmos_throttle_signal().count
    finally:
        await clients.close_all()
    # The client's transport saw the 429s (the SDK's own retries included), and the writes in
    # flight came down from ETL_WRITE_CONCURRENCY (32) while they lasted.
    [completed] = [json.loads(r.getMessage()) for r in caplog.records if '"etl.completed"' in r.getMessage()]
    assert seen_by_client > 0
    assert completed["writesInFlightLowest"] < 32
    after = budgeted.cosmos_stats()
    assert after["throttled"] > before["throttled"], "the budget never throttled: the test proves nothing"
    assert (summary["status"], summary["written"], summary["invalid"]) == ("succeeded", 300, 0)


async def test_a_fanned_out_blob_loses_nothing_and_poisons_nothing_when_cosmos_throttles(
        budgeted: Emulators, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """Segments write under a 429 budget: the 429s are waited out (the service's retry-after), never
    counted as a segment's failure, so every record lands and no message reaches the poison queue."""
    from devhost.pipeline import Pipeline, jsonl_blob

    await provision(azurite=budgeted.azurite_connection_string, cosmos=budgeted.cosmos_connection_string,
                    database="ru", containers={"fanout": "/id"}, blob_containers=[])
    # The in-process worker (Pipeline.drain) reads these; monkeypatch restores them after the test.
    for name in ("EtlStorage", "CosmosConnection", "COSMOS_DATABASE", "COSMOS_CONTAINER", "ETL_WORK_QUEUE",
                 "ETL_INLINE_MAX_BYTES", "ETL_SEGMENT_RECORDS", "ETL_INPUT_CONTAINER", "ETL_SUMMARY_CONTAINER"):
        monkeypatch.setenv(name, "unset")
    pipeline = Pipeline(budgeted, "ru", "fanout", tmp_path, settings={"ETL_SEGMENT_RECORDS": "100"})
    pipeline.apply()
    blob = jsonl_blob(600, "t")
    before = budgeted.cosmos_stats()
    try:
        await pipeline.create_queues()
        etag = await pipeline.upload("throttled.jsonl", blob.data)
        await pipeline.trigger("throttled.jsonl", etag)
        await pipeline.drain(until=100)
        summary = await pipeline.summary("throttled.jsonl", etag, timeout=5)
        poisoned = await pipeline.poison_messages()
    finally:
        await clients_close()
    after = budgeted.cosmos_stats()
    assert after["throttled"] > before["throttled"], "the budget never throttled: the test proves nothing"
    assert poisoned == []
    segments = summary["segments"]
    assert segments["total"] >= 6 and segments == {"total": segments["total"], "succeeded": segments["total"],
                                                    "failed": 0, "abandoned": 0}
    assert (summary["written"], summary["invalid"]) == (len(blob.valid_ids), len(blob.invalid_indexes))
    assert set(budgeted.cosmos_item_ids("fanout")) == blob.valid_ids


async def clients_close() -> None:
    from common import clients

    await clients.close_all()


async def test_orders_under_throttling_are_all_created_once(budgeted: Emulators, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path_factory: pytest.TempPathFactory,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """40 concurrent creates, each with its own Idempotency-Key, against 200 RU/s: Cosmos DB answers
    429s, the store retries them within ORDERS_STORE_BUDGET_SECONDS, and every order is created
    exactly once (one key record, one event each)."""
    from tests.integration.conftest import orders_on
    from tests.integration.orders_client import sample_order

    async with orders_on(budgeted, monkeypatch, tmp_path_factory.mktemp("issuer")) as orders:
        set_env(monkeypatch, ORDERS_STORE_BUDGET_SECONDS="20")
        await asyncio.sleep(1.1)  # a full bucket to start from
        before = budgeted.cosmos_stats()
        answers = await asyncio.gather(*(orders.call("POST", "/api/orders", body=sample_order(),
                                                     headers={"Idempotency-Key": f"throttled-{i}"}) for i in range(40)))
        after = budgeted.cosmos_stats()
        from common import settings

        cfg = settings.orders_settings()
        events = budgeted.cosmos_item_ids(cfg.events_container)
        keys = budgeted.cosmos_item_ids(cfg.idempotency_container)
    assert [a.status for a in answers] == [201] * 40, [a.body for a in answers if a.status != 201][:2]
    assert len({a.body["id"] for a in answers}) == 40
    assert sorted(events) == sorted(f"{a.body['id']}:1" for a in answers)
    assert len(keys) == 40
    throttled = after["throttled"] - before["throttled"]
    assert throttled > 0
    with capsys.disabled():
        print(f"\n[figure] 40 concurrent creates at 200 RU/s: 40 orders, {throttled:.0f} answers 429 retried, 0 lost")
