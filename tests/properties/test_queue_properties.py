"""Property-based tests of QueueProcessor's message surface: body and application properties (issue 14).

Invariants pinned here, for any body (bytes, JSON, pathological JSON) and any application properties:
- no unhandled error: ``process_message`` (and ``main``) complete for bad input;
- nothing lost: exactly one message leaves, forwarded to 'out' XOR set aside on 'invalid' with an
  ``invalidReason``, its original body and its properties; the outcome is the one the contract
  predicts (a strict JSON object with a non-empty string id, which is text, is forwarded);
- a forwarded body is UTF-8 strict JSON (no NaN/Infinity) carrying the event unchanged;
- every message that leaves encodes with the SDK's own AMQP encoder, so a real send would not fail;
- a redelivered message (same message id) does not leave a second time.

What is drawn wide: the body and the application properties (every JSON type, ints past 32 and 64
bits, floats with NaN and infinities, lone surrogates, nested lists and objects, bytes). What is
drawn as AMQP can deliver it: message id and correlation id (valid Unicode, at most 128 characters,
as Service Bus allows), content type (valid Unicode), delivery count (a 32-bit count), and integers
of at most 4300 digits (the trigger's properties are JSON, which the worker reads with json.loads,
which refuses longer ones). See the report of issue 14 for what happens past those bounds.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage as ServiceBusTriggerMessage
from hypothesis import event, given
from hypothesis import strategies as st

import QueueProcessor
from common.logs import bind_invocation
from QueueProcessor.processing import (
    MAX_REASON_LENGTH,
    ORIGINAL_PREFIX,
    SET_ASIDE_PROPERTIES,
    InboundMessage,
    item_id,
    output_message_id,
    process_message,
)
from tests.conftest import FakeContext, set_env, use_fake_clients
from tests.fakes import FakeContainer, FakeServiceBus
from tests.properties.oracle import Refused, strict_document
from tests.test_queue_processor import QUEUES, amqp_round_trip

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
REASONS = {"not_utf8", "not_json", "not_object", "missing_id", "result_too_large"}

# ----------------------------------------------------------------------------------- strategies

#: Any code point, lone surrogates and C0 controls included (st.text() leaves surrogates out).
WILD_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.characters(max_codepoint=31))


def wild_text(max_size: int = 20) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=max_size), st.lists(WILD_CHAR, max_size=max_size).map("".join))


#: Integers at every AMQP boundary (int, long, ulong) and past them, within the 4300-digit limit.
BOUNDARY_INTS = st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63),
                                 -(2**63) - 1, 2**64 - 1, 2**64, 10**30, -(10**30), 10**4299, 1709502629433])
INTS = st.one_of(st.integers(), st.integers(-(2**70), 2**70), BOUNDARY_INTS)
FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)


def json_values(text: st.SearchStrategy[str], floats: st.SearchStrategy[float] = FINITE_FLOATS) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | INTS | floats | text
    return st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                        | st.dictionaries(text, children, max_size=4), max_leaves=15)


JSON_VALUES = json_values(wild_text(12))
#: Application property values: every JSON type (as the trigger hands them over) and bytes (an
#: in-process caller's), floats non-finite too (a .NET double can be NaN).
PROPERTY_VALUES = st.one_of(st.none(), st.booleans(), INTS, st.floats(), wild_text(30), st.binary(max_size=20),
                            json_values(wild_text(8), st.floats()))
PROPERTIES = st.dictionaries(st.one_of(wild_text(16), st.sampled_from(["Diagnostic-Id", "traceparent", "tenant"])),
                             PROPERTY_VALUES, max_size=6)

#: Event ids: mostly plausible; blank, not text (a lone surrogate) or not a string at all.
GOOD_IDS = st.text(min_size=1, max_size=40).filter(str.strip)
IDS = st.one_of(GOOD_IDS, GOOD_IDS, st.sampled_from(["", "  ", "\t", "a\ud800", "\udfff", "order-7"]), wild_text(20),
                JSON_VALUES)
FIELDS = st.dictionaries(wild_text(8), JSON_VALUES, max_size=4)
EVENTS = st.builds(lambda rest, event_id: {**rest, "id": event_id}, FIELDS, IDS)
GOOD_EVENTS = st.builds(lambda rest, event_id: {**rest, "id": event_id}, FIELDS, GOOD_IDS)


def encode(value: Any, draw: st.DrawFn) -> bytes:
    """JSON as a producer would write it: escaped or raw UTF-8 (raw cannot carry a lone surrogate:
    those come out as invalid UTF-8, which is input too), compact or indented, maybe with a BOM."""
    ascii_only = draw(st.sampled_from([True, True, False]))
    text = json.dumps(value, ensure_ascii=ascii_only, indent=draw(st.sampled_from([None, None, 1])))
    return draw(st.sampled_from([b"", b"", b"\xef\xbb\xbf"])) + text.encode("utf-8", "surrogatepass")


@st.composite
def json_documents(draw: st.DrawFn) -> bytes:
    """Mostly events (objects with an id of any kind), sometimes any JSON value."""
    return encode(draw(st.one_of(EVENTS, JSON_VALUES) if draw(st.integers(0, 3)) == 0 else EVENTS), draw)


@st.composite
def good_documents(draw: st.DrawFn) -> bytes:
    """Events that must be forwarded: lone surrogates may sit in their fields, escaped."""
    value = draw(GOOD_EVENTS)
    data = encode(value, draw)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        data = json.dumps(value).encode()
    return data


#: A valid event with one pathology in it (NaN, Infinity, out-of-range or over-long numbers, deep nesting).
PATHOLOGICAL = st.tuples(
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1E309", b"9" * 4301, b"-" + b"1" * 5000]),
    st.integers(0, 3),
).map(lambda p: b'{"id": "e-1", "v": ' + b"[" * p[1] + p[0] + b"]" * p[1] + b"}") | st.integers(64, 20_000).map(
    lambda d: b'{"id": "e-1", "v": ' + b"[" * d + b"]" * d + b"}") | st.integers(64, 20_000).map(
    lambda d: b"[" * d)
#: Bytes assembled from JSON's pieces, so that arbitrary input gets past the first byte.
FRAGMENTS = st.sampled_from([b"{", b"}", b"[", b"]", b",", b":", b'"id"', b'"x"', b'"\\ud800"', b"1", b"NaN", b" ",
                             b"\xff", b"\xc3\xa9", b"\xef\xbb\xbf", b'"', b"\\", b"null"])
BODIES = st.one_of(st.binary(max_size=120), st.lists(FRAGMENTS, max_size=30).map(b"".join), json_documents(),
                   good_documents(), PATHOLOGICAL)

#: What AMQP can deliver for the envelope (see the module docstring).
MESSAGE_IDS = st.one_of(st.none(), st.just(""), st.text(min_size=1, max_size=128), st.just("m" * 128))
CORRELATION_IDS = st.one_of(st.none(), st.text(max_size=128))
CONTENT_TYPES = st.one_of(st.none(), st.sampled_from(["application/json", "text/plain; charset=utf-8", ""]),
                          st.text(max_size=30))
DELIVERY_COUNTS = st.one_of(st.none(), st.integers(0, 2**31 - 1))
INBOUND = st.builds(InboundMessage, body=BODIES, message_id=MESSAGE_IDS, correlation_id=CORRELATION_IDS,
                    delivery_count=DELIVERY_COUNTS, content_type=CONTENT_TYPES, application_properties=PROPERTIES)


# ------------------------------------------------------------------------- the contract, restated

def expected_outcome(body: bytes) -> tuple[str, Any]:
    """("forwarded", event) or ("invalid", reasons it may be set aside with)."""
    try:
        document = strict_document(body)
    except Refused:
        return "invalid", {"not_utf8", "not_json"}
    if not isinstance(document, dict):
        return "invalid", {"not_object"}
    event_id = document.get("id")
    if not isinstance(event_id, str) or not event_id.strip() or any(0xD800 <= ord(c) <= 0xDFFF for c in event_id):
        return "invalid", {"missing_id"}
    return "forwarded", document


def effective_id(inbound: InboundMessage) -> str:
    import hashlib

    return inbound.message_id or "sha256-" + hashlib.sha256(inbound.body).hexdigest()[:40]


def amqp_text(value: str) -> bytes:
    """An AMQP string as pyamqp's decoder returns it: UTF-8, a lone surrogate as its escape."""
    return value.encode("utf-8", "backslashreplace")


def expected_property(value: Any) -> Any:
    """What a receiver decodes for an application property (pyamqp hands strings back as bytes)."""
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value).encode()
    if isinstance(value, str):
        return amqp_text(value)
    if isinstance(value, bytes):
        try:
            return amqp_text(value.decode("utf-8"))
        except UnicodeDecodeError:
            return base64.b64encode(value)
    return amqp_text(json.dumps(value, default=str))


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def strict_loads(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard constant {name} in a forwarded body")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


# ------------------------------------------------------------------------------------- drivers

async def process(inbound: InboundMessage, bus: FakeServiceBus) -> str:
    return await process_message(inbound, queues=QUEUES, log=bind_invocation(FakeContext(function_name="QueueProcessor")),
                                 container=FakeContainer(), sender_for=bus.sender_for, now=lambda: NOW)


def left(bus: FakeServiceBus) -> list[tuple[str, Any]]:
    return [(name, message) for name, queue in bus.queues.items() for message in queue.messages]


def check_forwarded(inbound: InboundMessage, message: Any, event_value: dict[str, Any]) -> None:
    body = b"".join(message.body)
    result = strict_loads(body)  # UTF-8 (strict decode) and strict JSON
    assert result["status"] == "processed" and result["id"] == event_value["id"]
    assert result["payload"] == event_value  # floats compared by value: a repr round trip is exact
    assert result["sourceMessageId"] == effective_id(inbound)
    assert message.message_id == output_message_id(item_id(f"/queues/{QUEUES.input_queue}", event_value["id"]), event_value)
    decoded = amqp_round_trip(message)
    assert b"".join(decoded.data) == body


def check_set_aside(inbound: InboundMessage, message: Any, reasons: set[str]) -> None:
    assert b"".join(message.body) == inbound.body  # the original, unaltered
    props = message.application_properties
    assert props["invalidReason"] in reasons
    assert 0 < len(props["invalidDetail"]) <= MAX_REASON_LENGTH
    assert props["sourceMessageId"] == effective_id(inbound) and props["sourceQueue"] == QUEUES.input_queue
    decoded = amqp_round_trip(message)
    assert b"".join(decoded.data) == inbound.body
    received = decoded.application_properties
    assert received[b"invalidReason"] == props["invalidReason"].encode()
    # Every property the producer set travels with it, typed as a receiver can read it; one named
    # like a property the copy sets itself (its reason, its trace context) as "original.<name>".
    keys = [amqp_text(str(key)) for key in inbound.application_properties]
    for key, value in inbound.application_properties.items():
        name = amqp_text(str(key))
        if keys.count(name) != 1:
            continue
        if name.decode("utf-8", "replace") in SET_ASIDE_PROPERTIES:
            name = ORIGINAL_PREFIX.encode() + name
        assert same(received[name], expected_property(value)), (key, value, received[name])


# ------------------------------------------------------------------------------------ properties

@given(inbound=INBOUND)
async def test_every_message_leaves_once_forwarded_xor_set_aside_and_encodes_for_amqp(inbound: InboundMessage) -> None:
    bus = FakeServiceBus("out", "invalid")
    outcome = await process(inbound, bus)
    [(queue, message)] = left(bus)
    expected, detail = expected_outcome(inbound.body)
    event(f"{outcome}: {message.application_properties.get('invalidReason', '')}")
    assert (outcome, queue) == (expected, {"forwarded": "out", "invalid": "invalid"}[expected])
    if outcome == "forwarded":
        check_forwarded(inbound, message, detail)
    else:
        check_set_aside(inbound, message, detail)


@given(body=good_documents(), properties=PROPERTIES)
async def test_an_event_with_a_string_id_is_forwarded_as_strict_utf8_json_carrying_it(
        body: bytes, properties: dict[Any, Any]) -> None:
    inbound = InboundMessage(body, "m-1", application_properties=properties)
    bus = FakeServiceBus("out", "invalid")
    assert await process(inbound, bus) == "forwarded"
    [message] = bus.queues["out"].messages
    check_forwarded(inbound, message, strict_document(body))
    assert bus.queues["invalid"].messages == []


@given(body=PATHOLOGICAL)
async def test_pathological_json_is_set_aside_as_not_json_never_forwarded(body: bytes) -> None:
    inbound = InboundMessage(body, "m-1")
    bus = FakeServiceBus("out", "invalid")
    assert await process(inbound, bus) == "invalid"
    [message] = bus.queues["invalid"].messages
    check_set_aside(inbound, message, {"not_json"})
    assert bus.queues["out"].messages == []


@given(properties=PROPERTIES, body=st.sampled_from([b"{broken", b"\xff", b"[1]", b'{"id": 5}', b'{"id": 1, "x": NaN}']))
async def test_every_property_type_survives_the_set_aside_path_through_the_amqp_encoder(
        properties: dict[Any, Any], body: bytes) -> None:
    inbound = InboundMessage(body, "m-1", application_properties=properties)
    bus = FakeServiceBus("out", "invalid")
    assert await process(inbound, bus) == "invalid"
    [message] = bus.queues["invalid"].messages
    check_set_aside(inbound, message, REASONS)


@given(inbound=INBOUND)
async def test_a_redelivered_message_does_not_leave_twice(inbound: InboundMessage) -> None:
    bus = FakeServiceBus("out", "invalid")
    first = await process(inbound, bus)
    again = InboundMessage(inbound.body, inbound.message_id, inbound.correlation_id,
                           (inbound.delivery_count or 1) + 1, inbound.content_type, inbound.application_properties)
    second = await process(again, bus)
    assert first == second
    assert len(left(bus)) == 1


@given(body=BODIES, properties=PROPERTIES, message_id=MESSAGE_IDS, correlation_id=CORRELATION_IDS)
async def test_main_completes_for_any_message_and_exactly_one_leaves(
        monkeypatch: pytest.MonkeyPatch, body: bytes, properties: dict[Any, Any], message_id: str | None,
        correlation_id: str | None) -> None:
    """Through the trigger's own message type and QueueProcessor.main (settings, logs, telemetry)."""
    set_env(monkeypatch, INPUT_QUEUE_NAME="in", OUTPUT_QUEUE_NAME="out", INVALID_QUEUE_NAME="invalid")
    bus = FakeServiceBus("out", "invalid")
    use_fake_clients(monkeypatch, bus=bus, cosmos=FakeContainer())
    msg = ServiceBusTriggerMessage(body=body, message_id=message_id, delivery_count=1, correlation_id=correlation_id,
                                   content_type="application/json", application_properties=properties,
                                   user_properties=properties)
    await QueueProcessor.main(msg, FakeContext(function_name="QueueProcessor"))
    [(queue, message)] = left(bus)
    assert queue == ("out" if expected_outcome(body)[0] == "forwarded" else "invalid")
    amqp_round_trip(message)
