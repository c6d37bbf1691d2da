"""QueueProcessor with the real Service Bus SDK.

- Always: against a namespace that does not answer (loopback, nothing listening),
  the invocation fails within its send budget instead of hanging.
- Opt-in: with SERVICEBUS_TEST_CONNECTION set (a real namespace or the official
  emulator) and the queues of docs/event-chain.md created, messages really flow. No local
  broker installs on this machine, so these are skipped here.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import pytest

import QueueProcessor
from common import clients
from tests.conftest import FakeContext, set_env

OPT_IN = os.environ.get("SERVICEBUS_TEST_CONNECTION", "")
needs_namespace = pytest.mark.skipif(not OPT_IN, reason="set SERVICEBUS_TEST_CONNECTION to run against Service Bus")


def trigger(body: bytes, message_id: str, delivery_count: int = 1):  # noqa: ANN201
    from azure.functions.servicebus import ServiceBusMessage

    return ServiceBusMessage(body=body, message_id=message_id, delivery_count=delivery_count, correlation_id=None,
                             content_type="application/json", application_properties={}, user_properties={})


@pytest.mark.timeout(60)
async def test_unreachable_namespace_fails_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch,
            ServiceBusConnection="Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=RootManageSharedAccessKey;"
                                 "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
            INPUT_QUEUE_NAME="in", OUTPUT_QUEUE_NAME="out", INVALID_QUEUE_NAME="invalid",
            QUEUE_SEND_BUDGET_SECONDS="3", QUEUE_SEND_MAX_ATTEMPTS="10")
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as info:
            await QueueProcessor.main(trigger(b'{"id": "a"}', "m-1"), FakeContext(function_name="QueueProcessor"))
    finally:
        await clients.close_all()
    elapsed = time.monotonic() - started
    assert elapsed < 6.0, f"took {elapsed:.1f} s"
    assert "SAS_KEY_VALUE" not in str(info.value)


@pytest.fixture
async def live_queues(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    names = {
        "INPUT_QUEUE_NAME": os.environ.get("SERVICEBUS_TEST_INPUT_QUEUE", "orders-in"),
        "OUTPUT_QUEUE_NAME": os.environ.get("SERVICEBUS_TEST_OUTPUT_QUEUE", "orders-out"),
        "INVALID_QUEUE_NAME": os.environ.get("SERVICEBUS_TEST_INVALID_QUEUE", "orders-invalid"),
    }
    set_env(monkeypatch, ServiceBusConnection=OPT_IN, **names)
    yield names
    await clients.close_all()


async def receive_all(queue: str, wait: float = 5.0) -> list:
    client = clients.service_bus_client()
    async with client.get_queue_receiver(queue, max_wait_time=wait) as receiver:
        received = []
        while batch := await receiver.receive_messages(max_message_count=50, max_wait_time=wait):
            for message in batch:
                received.append(message)
                await receiver.complete_message(message)
        return received


@needs_namespace
@pytest.mark.servicebus
@pytest.mark.timeout(120)
async def test_live_forward_deduplicates_and_routes_invalid(live_queues: dict[str, str]) -> None:
    await receive_all(live_queues["OUTPUT_QUEUE_NAME"], wait=2)
    await receive_all(live_queues["INVALID_QUEUE_NAME"], wait=2)
    message_id = f"live-{uuid.uuid4()}"
    body = json.dumps({"id": "order-live", "n": 1}).encode()
    await QueueProcessor.main(trigger(body, message_id), FakeContext(function_name="QueueProcessor"))
    await QueueProcessor.main(trigger(body, message_id, delivery_count=2), FakeContext(function_name="QueueProcessor"))
    await QueueProcessor.main(trigger(b"{broken", f"bad-{uuid.uuid4()}"), FakeContext(function_name="QueueProcessor"))
    await asyncio.sleep(1)
    forwarded = await receive_all(live_queues["OUTPUT_QUEUE_NAME"])
    assert len(forwarded) == 1, "the output queue needs duplicate detection on"
    assert json.loads(str(forwarded[0]))["sourceMessageId"] == message_id
    aside = await receive_all(live_queues["INVALID_QUEUE_NAME"])
    assert len(aside) == 1 and aside[0].application_properties[b"invalidReason"] == b"not_json"
