"""The invocation wrapper (common.invocation): the error model's table applied by class, masking, and the log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common import invocation, telemetry
from common.errors import ConfigurationError, InvalidInput, InvocationFailed, TransientFailure
from common.invocation import OUTCOMES, Outcome, Trigger, http_status, outcome_of
from tests.conftest import FakeContext, FakeTraceContext

HOST = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UPSTREAM = "00-11111111111111111111111111111111-2222222222222222-01"


class NotJson(InvalidInput):
    status = 415


def test_every_trigger_has_an_outcome_for_every_kind_of_failure() -> None:
    for trigger in Trigger:
        assert set(OUTCOMES[trigger]) == {InvalidInput, TransientFailure, ConfigurationError, Exception}


@pytest.mark.parametrize(("trigger", "error", "expected"), [
    (Trigger.EVENT_GRID, InvalidInput("x"), Outcome.COMPLETE),
    (Trigger.EVENT_GRID, TransientFailure("x"), Outcome.RETRY),
    (Trigger.SERVICE_BUS, NotJson("x"), Outcome.SET_ASIDE),  # a subclass finds its base's entry
    (Trigger.SERVICE_BUS, ConfigurationError("S", "is bad"), Outcome.RETRY),
    (Trigger.STORAGE_QUEUE, InvalidInput("x"), Outcome.RETRY),  # to maxDequeueCount, then the poison queue
    (Trigger.TIMER, RuntimeError("x"), Outcome.FAIL),
    (Trigger.HTTP, KeyError("x"), Outcome.REPLY),
])
def test_outcomes_are_looked_up_by_class(trigger: Trigger, error: Exception, expected: Outcome) -> None:
    assert outcome_of(trigger, error) is expected


def test_http_statuses_follow_the_kind_of_failure() -> None:
    assert http_status(InvalidInput("x")) == 400
    assert http_status(NotJson("x")) == 415
    assert http_status(TransientFailure("x")) == 503
    assert http_status(ConfigurationError("S", "is bad")) == 500
    assert http_status(ValueError("x")) == 500


async def test_invalid_input_completes_an_event_grid_invocation_with_its_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        async with invocation.run(FakeContext(function_name="F"), Trigger.EVENT_GRID, "F", refused_event="f.bad"):
            raise InvalidInput("no blob named", reason="bad_event")
    logged = json.loads(caplog.records[-1].getMessage())
    assert (logged["event"], logged["reason"], logged["detail"]) == ("f.bad", "bad_event", "no blob named")


async def test_invalid_input_on_service_bus_goes_to_the_set_aside_hook() -> None:
    set_aside: list[InvalidInput] = []

    async def hook(error: InvalidInput) -> None:
        set_aside.append(error)

    error = InvalidInput("bad", reason="not_json")
    async with invocation.run(FakeContext(), Trigger.SERVICE_BUS, "F", set_aside=hook):
        raise error
    assert set_aside == [error]


async def test_without_a_hook_invalid_service_bus_input_fails_for_redelivery() -> None:
    with pytest.raises(InvocationFailed, match="InvalidInput: bad"):
        async with invocation.run(FakeContext(), Trigger.SERVICE_BUS, "F"):
            raise InvalidInput("bad")


async def test_a_failure_reaches_the_host_masked_and_without_its_cause() -> None:
    secret = "AccountKey=c2VjcmV0c2VjcmV0c2VjcmV0"
    with pytest.raises(InvocationFailed) as info:
        async with invocation.run(FakeContext(), Trigger.STORAGE_QUEUE, "F"):
            raise RuntimeError(f"connect failed: {secret}")
    assert "c2VjcmV0" not in str(info.value) and "AccountKey=***" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_a_configuration_error_is_logged_with_the_setting_it_names(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(InvocationFailed, match="ETL_WORK_QUEUE"):
        async with invocation.run(FakeContext(function_name="F"), Trigger.TIMER, "F"):
            raise ConfigurationError("ETL_WORK_QUEUE", "must not be empty")
    logged = json.loads(caplog.records[-1].getMessage())
    assert (logged["event"], logged["setting"]) == ("invocation.misconfigured", "ETL_WORK_QUEUE")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_providers(provider, MeterProvider())
    yield exporter


async def test_log_lines_carry_the_trace_their_span_is_recorded_under(spans: InMemorySpanExporter,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    context = FakeContext(function_name="F", trace_context=FakeTraceContext(trace_parent=HOST))
    with caplog.at_level(logging.INFO):
        async with invocation.run(context, Trigger.SERVICE_BUS, "F", continues=UPSTREAM) as call:
            call.log.info("f.done")
    [span] = spans.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == "1" * 32  # the span continues the event's trace...
    logged = json.loads(caplog.records[-1].getMessage())
    assert logged["traceId"] == "1" * 32  # ...and so does the log, under that span
    assert logged["spanId"] == f"{span.context.span_id:016x}"


async def test_with_telemetry_off_log_lines_keep_the_host_trace(caplog: pytest.LogCaptureFixture) -> None:
    context = FakeContext(function_name="F", trace_context=FakeTraceContext(trace_parent=HOST))
    with caplog.at_level(logging.INFO):
        async with invocation.run(context, Trigger.SERVICE_BUS, "F", continues=UPSTREAM) as call:
            call.log.info("f.done")
    assert json.loads(caplog.records[-1].getMessage())["traceId"] == "0af7651916cd43dd8448eb211c80319c"
