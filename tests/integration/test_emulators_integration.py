"""BlobEtl and CleanupTimer end to end against Azurite and the Cosmos DB API server,
with the app's real clients from common.clients."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import BlobEtl
import CleanupTimer
from common import clients, settings
from devhost.emulators import Emulators
from tests.conftest import FakeContext, set_env
from tests.integration.conftest import new_container

pytestmark = pytest.mark.integration


def blob_created(path: str, etag: str, length: int) -> Any:
    """The BlobCreated event Event Grid delivers to BlobEtl for the blob ``container/name`` at ``etag``."""
    import azure.functions as func

    from devhost.runtime_host import blob_created_event

    container, _, name = path.partition("/")
    event = blob_created_event(container, name, etag=etag, content_length=length)
    return func.EventGridEvent(id=event["id"], data=event["data"], topic=event["topic"], subject=event["subject"],
                               event_type=event["eventType"], event_time=None, data_version="")


def record(i: int, source: str | None = None) -> dict[str, Any]:
    return {"id": f"rec-{i:05d}", "data": f"payload {i}", "source": source or f"sensor-{i % 11}", "type": "reading"}


async def upload_and_run(name: str, data: bytes) -> dict[str, Any]:
    """Upload to Azurite's 'incoming', run BlobEtl on it as the trigger would, return the summary blob."""
    service = clients.blob_service_client("EtlStorage")
    uploaded = await service.get_blob_client("incoming", name).upload_blob(data, overwrite=True)
    await BlobEtl.main(blob_created(f"incoming/{name}", uploaded["etag"], len(data)), FakeContext(function_name="BlobEtl"))
    summary = await (await service.get_blob_client("summaries", f"{name}.summary.json").download_blob()).readall()
    return json.loads(summary)


async def all_items() -> list[dict[str, Any]]:
    container = clients.cosmos_container()
    return [item async for item in container.query_items("SELECT * FROM c")]


@pytest.mark.parametrize("partition_key_path", ["/id", "/metadata/source"])
async def test_blob_with_valid_and_invalid_records(app_env: Emulators, monkeypatch: pytest.MonkeyPatch,
                                                   partition_key_path: str) -> None:
    await new_container(app_env, partition_key_path, monkeypatch)
    records: list[Any] = [record(i) for i in range(150)]
    records[10] = {"id": "broken", "data": None, "source": "s", "type": "t"}
    records[99] = ["not", "an", "object"]
    summary = await upload_and_run("mixed.json", json.dumps(records).encode())
    assert (summary["status"], summary["totalRecords"], summary["written"], summary["invalid"]) == ("partial", 150, 148, 2)
    assert [e["index"] for e in summary["errors"]] == [10, 99]
    items = await all_items()
    assert len(items) == 148
    sample = next(i for i in items if i["id"] == "rec-00003")
    assert sample["processedData"] == "PAYLOAD 3"
    assert sample["metadata"] == {"source": "sensor-3", "type": "reading"}
    assert sample["sourceBlob"] == "incoming/mixed.json" and sample["timestamp"].endswith("Z")

    # A re-run (blob triggers can fire twice) rewrites the same items and the same summary.
    again = await upload_and_run("mixed.json", json.dumps(records).encode())
    assert again["written"] == 148
    assert len(await all_items()) == 148


async def test_json_lines_blob(app_env: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    await new_container(app_env, "/id", monkeypatch)
    lines = [json.dumps(record(i)) for i in range(40)] + ["{not json", json.dumps({"id": "x"})]
    summary = await upload_and_run("feed.jsonl", ("\n".join(lines) + "\n").encode())
    assert (summary["written"], summary["invalid"]) == (40, 2)
    assert summary["errors"][0]["line"] == 41
    assert len(await all_items()) == 40


async def test_malformed_blob_writes_nothing(app_env: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    await new_container(app_env, "/id", monkeypatch)
    data = json.dumps([record(i) for i in range(20)]).encode()[:-25]
    summary = await upload_and_run("truncated.json", data)
    assert summary["status"] == "failed" and "not valid JSON" in summary["error"]
    assert summary["written"] == 0
    assert await all_items() == []


async def test_5000_record_blob_throughput(app_env: Emulators, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    await new_container(app_env, "/metadata/source", monkeypatch)
    data = json.dumps([record(i) for i in range(5000)]).encode()
    started = time.perf_counter()
    summary = await upload_and_run("big.json", data)
    elapsed = time.perf_counter() - started
    assert summary["written"] == 5000 and summary["status"] == "succeeded"
    count = [n async for n in clients.cosmos_container().query_items("SELECT VALUE COUNT(1) FROM c")]
    assert count == [5000]
    with capsys.disabled():
        print(f"\n[figure] BlobEtl 5,000 records into the Cosmos DB API server: {elapsed:.2f} s, "
              f"{5000 / elapsed:.0f} records/s (upload, ETL and summary; concurrency "
              f"{settings.etl_settings().write_concurrency})")


async def seed_cleanup(expired: int, fresh: int) -> None:
    container = clients.cosmos_container()
    now = datetime.now(UTC)
    for i in range(max(expired, fresh)):
        if i < expired:
            stamp = (now - timedelta(days=31 + i % 9)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            await container.upsert_item({"id": f"old-{i}", "timestamp": stamp,
                                         "metadata": {"source": f"src-{i % 23}", "type": "t"}})
        if i < fresh:
            stamp = (now - timedelta(days=i % 29)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            await container.upsert_item({"id": f"new-{i}", "timestamp": stamp,
                                         "metadata": {"source": f"src-{i % 23}", "type": "t"}})


async def run_timer() -> None:
    from azure.functions.timer import TimerRequest

    await CleanupTimer.main(TimerRequest(past_due=False), FakeContext(function_name="CleanupTimer"))


@pytest.mark.parametrize("partition_key_path", ["/id", "/metadata/source"])
async def test_cleanup_deletes_only_expired_items(app_env: Emulators, monkeypatch: pytest.MonkeyPatch,
                                                  partition_key_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    await new_container(app_env, partition_key_path, monkeypatch)
    set_env(monkeypatch, CLEANUP_PAGE_SIZE="50")
    await seed_cleanup(expired=260, fresh=120)

    set_env(monkeypatch, CLEANUP_DRY_RUN="true")
    await run_timer()
    assert len(await all_items()) == 380

    set_env(monkeypatch, CLEANUP_DRY_RUN="false")
    started = time.perf_counter()
    await run_timer()
    elapsed = time.perf_counter() - started
    remaining = await all_items()
    assert sorted(i["id"] for i in remaining) == sorted(f"new-{i}" for i in range(120))

    await run_timer()  # a second run finds nothing and changes nothing
    assert len(await all_items()) == 120
    with capsys.disabled():
        print(f"\n[figure] CleanupTimer ({partition_key_path}): 260 expired items deleted in {elapsed:.2f} s, "
              f"{260 / elapsed:.0f} deletes/s")


async def test_cleanup_max_deletes_leaves_the_rest_for_the_next_run(app_env: Emulators,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    await new_container(app_env, "/metadata/source", monkeypatch)
    await seed_cleanup(expired=120, fresh=10)
    set_env(monkeypatch, CLEANUP_MAX_DELETES="50")
    await run_timer()
    assert len(await all_items()) == 80
    set_env(monkeypatch, CLEANUP_MAX_DELETES="0")
    await run_timer()
    assert len(await all_items()) == 10


@pytest.mark.parametrize("partition_key_path", ["/id", "/metadata/source"])
async def test_a_cloud_event_from_event_grid_is_stored_once_in_cosmos(app_env: Emulators, monkeypatch: pytest.MonkeyPatch,
                                                                      partition_key_path: str) -> None:
    """QueueProcessor with the app's real Cosmos DB client against the emulator (Service Bus faked:
    no broker runs here): a CloudEvent as Event Grid delivers it is stored once and forwarded once;
    its redelivery rewrites the same item; a plain event lands next to it."""
    from azure.functions.servicebus import ServiceBusMessage as ServiceBusTriggerMessage

    import QueueProcessor
    from tests.conftest import use_fake_clients
    from tests.fakes import FakeServiceBus

    await new_container(app_env, partition_key_path, monkeypatch)
    bus = FakeServiceBus("orders-out", "orders-invalid")
    use_fake_clients(monkeypatch, bus=bus)
    set_env(monkeypatch, INPUT_QUEUE_NAME="orders-in", OUTPUT_QUEUE_NAME="orders-out", INVALID_QUEUE_NAME="orders-invalid")
    event = {"specversion": "1.0", "id": "order-7", "source": "/shop", "type": "order.created", "subject": "orders/7",
             "time": "2026-11-27T10:00:00Z", "data": {"qty": 2, "note": "Zoë"}, "correlationid": "c-7",
             "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    properties = {"aeg-subscription-name": "QUEUEPROCESSOR-EVENTS", "aeg-delivery-count": "0",
                  "aeg-event-type": "Notification", "aeg-metadata-version": "1.0", "Diagnostic-Id": event["traceparent"]}

    def delivery(body: bytes, message_id: str, count: int) -> ServiceBusTriggerMessage:
        return ServiceBusTriggerMessage(body=body, message_id=message_id, delivery_count=count, content_type=None,
                                        application_properties=properties, user_properties=properties)

    for count in (1, 2):  # delivered, then delivered again (a lock that expired mid-way)
        await QueueProcessor.main(delivery(json.dumps(event).encode(), "order-7", count), FakeContext(function_name="QueueProcessor"))
    await QueueProcessor.main(delivery(b'{"id": "plain-1", "qty": 1}', "m-plain", 1), FakeContext(function_name="QueueProcessor"))

    items = sorted(await all_items(), key=lambda item: item["eventId"])
    assert [item["eventId"] for item in items] == ["order-7", "plain-1"]
    stored = items[0]
    assert (stored["source"], stored["type"], stored["subject"], stored["payload"]) == (
        "/shop", "order.created", "orders/7", {"qty": 2, "note": "Zoë"})
    assert stored["metadata"] == {"source": "/shop", "type": "order.created"}
    assert items[1]["metadata"]["source"] == "/queues/orders-in"
    forwarded = bus.queues["orders-out"].messages
    assert len(forwarded) == 2  # the redelivery's copy had the same message id: dropped
    assert bus.queues["orders-invalid"].messages == []
