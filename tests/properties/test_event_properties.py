"""Property-based tests of the event chain's input surfaces: PublishEvent's request and the
CloudEvents QueueProcessor reads from Service Bus.

Invariants, for any body, content type and Idempotency-Key a caller can send:
- PublishEvent answers 202, 400, 413 or 415 (never a 5xx for client input); its body is a JSON
  object holding ``id`` and ``correlationId`` (202) or a non-empty ``error``;
- a 202 exactly when one event was published, and then the reply's id is the published id;
  anything else publishes nothing;
- what PublishEvent publishes, QueueProcessor accepts (both ends apply one rule set), and the
  stored item carries the event's id, source, type and data unchanged;
- whatever object Service Bus delivers, QueueProcessor stores-and-forwards it or sets it aside
  with a reason, exactly one of the two, and stores at most one item however often it is delivered.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from common import cloud_events
from common.http_api import CallerCheck
from common.logs import bind_invocation
from common.settings import EventSettings, auth_settings
from PublishEvent.publishing import ACCESS, EventRequest, respond
from QueueProcessor.processing import InboundMessage, process_message
from tests.conftest import FakeContext
from tests.fakes import FakeContainer, FakeEventGridPublisher, FakeServiceBus
from tests.properties.test_greeting_properties import JSON_VALUES, wild_text
from tests.test_queue_processor import QUEUES

KEY = "ek-property-tests-0123456789abcdef"
CFG = EventSettings(topic_endpoint="https://t.westeurope-1.eventgrid.azure.net/api/events", max_event_bytes=4096,
                    publish_budget_seconds=1.0)
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)

EXTENSION_NAMES = st.one_of(st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True), wild_text(24))
ATTRIBUTE_VALUES = st.one_of(st.text(min_size=1, max_size=30), wild_text(30), st.integers(-(2**33), 2**33),
                             st.booleans(), st.none(), JSON_VALUES)


@st.composite
def cloud_event_like(draw: st.DrawFn) -> dict[str, Any]:
    """Objects with ``specversion``: mostly valid CloudEvents, each attribute sometimes broken."""
    event: dict[str, Any] = {"specversion": draw(st.sampled_from(["1.0", "1.0", "1.0", "0.3", 1.0, ""]))}
    for name in ("id", "source", "type"):
        if draw(st.integers(0, 9)):
            event[name] = draw(st.one_of(st.text(st.characters(codec="ascii", min_codepoint=33), min_size=1, max_size=40),
                                         ATTRIBUTE_VALUES, st.just("x" * 129)))
    for name in ("subject", "datacontenttype", "dataschema"):
        if draw(st.booleans()):
            event[name] = draw(ATTRIBUTE_VALUES)
    if draw(st.booleans()):
        event["time"] = draw(st.one_of(st.sampled_from(["2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123456789+01:00",
                                                        "2026-13-01T00:00:00Z", "yesterday", "2026-11-27"]),
                                       ATTRIBUTE_VALUES))
    choice = draw(st.integers(0, 3))
    if choice == 1:
        event["data"] = draw(JSON_VALUES)
    elif choice == 2:
        event["data_base64"] = draw(st.one_of(st.binary(max_size=30).map(lambda b: __import__("base64").b64encode(b).decode()),
                                              ATTRIBUTE_VALUES))
    elif choice == 3:
        event["data"], event["data_base64"] = draw(JSON_VALUES), "aGk="
    event.update(draw(st.dictionaries(EXTENSION_NAMES, ATTRIBUTE_VALUES, max_size=3)))
    return event


BODIES = st.one_of(
    st.binary(max_size=60),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    cloud_event_like().map(lambda e: json.dumps(e).encode("utf-8", "surrogatepass")),
    cloud_event_like().map(lambda e: json.dumps(e).encode()),
    st.dictionaries(wild_text(8), JSON_VALUES, max_size=4).map(lambda d: json.dumps(d).encode()),
    st.integers(4000, 5000).map(lambda n: json.dumps({"p": "x" * n}).encode()),
)
CONTENT_TYPES = st.one_of(st.none(), st.sampled_from(["application/json", "application/cloudevents+json",
                                                       "application/json; charset=utf-8", "text/plain",
                                                       "application/cloudevents-batch+json", "APPLICATION/JSON",
                                                       "application/json; charset=iso-8859-1"]), wild_text(20))
IDEMPOTENCY_KEYS = st.one_of(st.none(), st.text(st.characters(codec="ascii", min_codepoint=33, max_codepoint=126),
                                                min_size=1, max_size=40), wild_text(20))


API_KEY_MODE = auth_settings({"AUTH_MODE": "apikey"})


async def publish(body: bytes, content_type: str | None, idempotency_key: str | None,
                  topic: FakeEventGridPublisher) -> tuple[int, dict[str, Any]]:
    async def key() -> str:
        return KEY

    reply = await respond(EventRequest(body=body, api_key=KEY, content_type=content_type,
                                       idempotency_key=idempotency_key),
                          invocation_id="inv-1", log=bind_invocation(FakeContext(function_name="PublishEvent")),
                          read_settings=lambda: CFG, publisher=lambda: topic, now=lambda: NOW,
                          callers=CallerCheck(ACCESS, read_auth=lambda: API_KEY_MODE, load_api_key=key))
    return reply.status, json.loads(reply.body_json())


@given(BODIES, CONTENT_TYPES, IDEMPOTENCY_KEYS)
async def test_publish_event_answers_a_documented_status_and_publishes_only_on_202(
        body: bytes, content_type: str | None, idempotency_key: str | None) -> None:
    topic = FakeEventGridPublisher()
    status, reply = await publish(body, content_type, idempotency_key, topic)
    assert status in (202, 400, 413, 415), (status, reply)
    if status == 202:
        assert set(reply) == {"id", "correlationId"}
        [event] = topic.published
        assert event["id"] == reply["id"]
        cloud_events.validate(event)
    else:
        assert set(reply) == {"error"} and reply["error"]
        assert topic.calls == 0


@given(cloud_event_like())
async def test_what_publish_event_publishes_queue_processor_stores_unchanged(event: dict[str, Any]) -> None:
    topic = FakeEventGridPublisher()
    body = json.dumps(event).encode()
    status, reply = await publish(body, "application/cloudevents+json", None, topic)
    # The contract: the caller's trace context is replaced by the request's, a correlation id added.
    expected = {k: v for k, v in event.items() if k not in cloud_events.TRACE_ATTRIBUTES}
    expected.setdefault("correlationid", "inv-1")
    if len(body) > CFG.max_event_bytes:
        assert status == 413
        return
    try:
        cloud_events.validate(expected)
    except cloud_events.CloudEventError:
        assert status == 400, reply
        return
    if status == 413:  # with the trace context added, it no longer fits
        assert len(json.dumps(expected)) > CFG.max_event_bytes - 120
        return
    assert status == 202, reply
    [published] = topic.published
    delivered = json.dumps(published).encode()  # Event Grid: one event per message, its JSON object
    bus, store = FakeServiceBus("out", "invalid"), FakeContainer()
    for count in (1, 2):  # and once more: a redelivery
        outcome = await process_message(InboundMessage(delivered, published["id"], delivery_count=count), queues=QUEUES,
                                        log=bind_invocation(FakeContext()), container=store,
                                        sender_for=bus.sender_for, now=lambda: NOW)
        assert outcome == "forwarded"
    [item] = store.items.values()
    assert (item["eventId"], item["source"], item["type"]) == (event["id"], event["source"], event["type"])
    if "time" in event:  # the same instant, to the microsecond, whatever offset it was sent with
        assert cloud_events.parse_time(item["time"]) == cloud_events.parse_time(event["time"])
    if "data_base64" in event:
        assert item["payloadBase64"] == event["data_base64"]
    else:
        assert item["payload"] == event.get("data")
    assert len(bus.queues["out"].messages) == 1


@given(st.one_of(cloud_event_like().map(lambda e: json.dumps(e).encode("utf-8", "surrogatepass")), BODIES),
       st.integers(1, 3))
async def test_queue_processor_stores_and_forwards_or_sets_aside_exactly_once(body: bytes, deliveries: int) -> None:
    bus, store = FakeServiceBus("out", "invalid"), FakeContainer()
    outcomes = set()
    for count in range(1, deliveries + 1):
        outcomes.add(await process_message(InboundMessage(body, "m-1", delivery_count=count), queues=QUEUES,
                                           log=bind_invocation(FakeContext()), container=store,
                                           sender_for=bus.sender_for, now=lambda: NOW))
    assert len(outcomes) == 1
    forwarded, aside = bus.queues["out"].messages, bus.queues["invalid"].messages
    if outcomes == {"forwarded"}:
        assert (len(store.items), len(forwarded), len(aside)) == (1, 1, 0)
    else:
        assert outcomes == {"invalid"}
        assert (len(store.items), len(forwarded), len(aside)) == (0, 0, 1)
        assert aside[0].application_properties["invalidReason"] in (
            "not_utf8", "not_json", "not_object", "missing_id", "invalid_cloud_event")
