"""Spans, links, metrics and logs per function, with in-memory exporters; and what must never be exported."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import AnyValue

import BlobEtl
import CleanupTimer
import HttpGreeting
import PublishEvent
import QueueProcessor
from common import telemetry
from tests.conftest import APP_ROOT, FakeContext, FakeTraceContext, set_env, use_fake_clients
from tests.fakes import FakeContainer, FakeEventGridPublisher, FakeServiceBus, cosmos_error, event_grid_error
from tests.test_blob_etl import FakeBlobService, blob_created
from tests.test_http_greeting import request as http_request
from tests.test_publish_event import request as events_request
from tests.test_queue_processor import trigger as sb_trigger

HOST_TRACE = "0af7651916cd43dd8448eb211c80319c"
HOST_SPAN = "b7ad6b7169203331"
UPSTREAM = "00-11111111111111111111111111111111-2222222222222222-01"


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        telemetry.use_providers(tracer_provider, MeterProvider(metric_readers=[self.reader]))

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """name -> [(attributes, value)]; a counter's value is its sum, a histogram's its count."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = point.value if isinstance(point, NumberDataPoint) else point.count
                        found.setdefault(metric.name, []).append((dict(point.attributes), value))
        return found

    def exported_text(self) -> str:
        parts = []
        for span in self.finished():
            parts.append(span.to_json())
        parts.append(json.dumps(self.metrics(), default=str))
        return "\n".join(parts)


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    yield Telemetry()
    telemetry.reset()


def context(name: str) -> FakeContext:
    return FakeContext(function_name=name, trace_context=FakeTraceContext())


def as_hex(number: int, width: int) -> str:
    return format(number, f"0{width}x")


def attributes(item: ReadableSpan | Event) -> Mapping[str, AnyValue]:
    """A span's or a span event's attributes: every one these tests read has some."""
    assert item.attributes is not None, f"{item.name} has no attributes"
    return item.attributes


def parent_id(span: ReadableSpan) -> int:
    """The span id of the span's parent: every span these tests read has one."""
    assert span.parent is not None, f"{span.name} has no parent"
    return span.parent.span_id


async def test_http_span_continues_the_host_trace_and_counts(otel: Telemetry, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    set_env(monkeypatch, API_KEY="k-123456789")
    with caplog.at_level(logging.INFO):
        await HttpGreeting.main(http_request(params={"name": "Ada"}, key="k-123456789"), context("HttpGreeting"))
        await HttpGreeting.main(http_request(params={"name": "Ada"}, key="wrong"), context("HttpGreeting"))
    [first, second] = otel.finished("HttpGreeting")
    # Internal: the host reports the invocation as a request already; a server span would be a second one.
    assert first.kind == SpanKind.INTERNAL
    assert as_hex(first.context.trace_id, 32) == HOST_TRACE
    assert as_hex(parent_id(first), 16) == HOST_SPAN
    assert attributes(first)["http.response.status_code"] == 200
    assert attributes(second)["http.response.status_code"] == 401
    metrics = otel.metrics()
    assert sorted((a["outcome"], a["http.response.status_code"], v) for a, v in metrics["app.greeting.requests"]) == [
        ("greeted", 200, 1), ("wrong_key", 401, 1)]
    assert sum(v for _, v in metrics["http.server.request.duration"]) == 2
    assert json.loads(caplog.records[-1].getMessage())["traceId"] == HOST_TRACE


async def test_queue_trace_spans_input_processing_and_output(otel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = FakeServiceBus("out", "invalid")
    use_fake_clients(monkeypatch, bus=bus, cosmos=FakeContainer())
    set_env(monkeypatch, INPUT_QUEUE_NAME="in", OUTPUT_QUEUE_NAME="out", INVALID_QUEUE_NAME="invalid")
    from azure.servicebus import exceptions as sb

    bus.senders["out"].failures = [sb.ServiceBusServerBusyError(message="busy")]
    await QueueProcessor.main(sb_trigger({"id": "a"}, properties={"Diagnostic-Id": UPSTREAM}), context("QueueProcessor"))
    [consumer] = otel.finished("process in")
    [producer] = otel.finished("send out")
    # The host reports the invocation as a request; the app's span is internal, linked to the producer.
    assert consumer.kind == SpanKind.INTERNAL and producer.kind == SpanKind.PRODUCER
    assert as_hex(consumer.context.trace_id, 32) == HOST_TRACE
    assert [as_hex(link.context.trace_id, 32) for link in consumer.links] == ["1" * 32]
    assert parent_id(producer) == consumer.context.span_id
    assert attributes(consumer)["messaging.destination.name"] == "in"
    [out] = bus.queues["out"].messages
    traceparent = out.application_properties["traceparent"]
    assert traceparent == f"00-{HOST_TRACE}-{as_hex(producer.context.span_id, 16)}-01"
    assert out.application_properties["Diagnostic-Id"] == traceparent
    metrics = otel.metrics()
    assert [(a["outcome"], v) for a, v in metrics["app.queue.messages"]] == [("forwarded", 1)]
    assert [v for _, v in metrics["app.queue.send_retries"]] == [1]


async def test_invalid_message_is_counted_and_traced(otel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    bus = FakeServiceBus("out", "invalid")
    use_fake_clients(monkeypatch, bus=bus, cosmos=FakeContainer())
    set_env(monkeypatch, INPUT_QUEUE_NAME="in", OUTPUT_QUEUE_NAME="out", INVALID_QUEUE_NAME="invalid")
    await QueueProcessor.main(sb_trigger(b"{nope"), context("QueueProcessor"))
    assert otel.finished("send invalid")
    assert [(a["outcome"], v) for a, v in otel.metrics()["app.queue.messages"]] == [("invalid", 1)]
    assert "traceparent" in bus.queues["invalid"].messages[0].application_properties


async def test_etl_records_a_span_per_batch(otel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    container, blobs = FakeContainer(), FakeBlobService()
    use_fake_clients(monkeypatch, cosmos=container, blobs=blobs)
    set_env(monkeypatch, ETL_BATCH_SIZE="40")
    records = [{"id": f"r{i}", "data": "d", "source": "s", "type": "t"} for i in range(100)] + [{"id": 1}]
    event = blob_created(blobs, "incoming/x.json", json.dumps(records).encode())

    await BlobEtl.main(event, context("BlobEtl"))
    batches = otel.finished("etl.batch")
    assert [(attributes(s)["app.etl.batch.written"], attributes(s)["app.etl.batch.invalid"]) for s in batches] == [
        (40, 0), (40, 0), (20, 1)]
    [root] = otel.finished("BlobEtl")
    assert all(parent_id(b) == root.context.span_id for b in batches)
    assert sorted((a["outcome"], v) for a, v in otel.metrics()["app.etl.records"]) == [("invalid", 1), ("written", 100)]


async def test_cleanup_records_a_span_per_page(otel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.functions.timer import TimerRequest

    container = FakeContainer()
    for i in range(30):
        await container.upsert_item({"id": f"o{i}", "timestamp": "2001-01-01T00:00:00.000Z"})
    use_fake_clients(monkeypatch, cosmos=container)
    set_env(monkeypatch, CLEANUP_PAGE_SIZE="10")
    await CleanupTimer.main(TimerRequest(past_due=False), context("CleanupTimer"))
    pages = otel.finished("cleanup.page")
    assert [attributes(s)["app.cleanup.page.deleted"] for s in pages] == [10, 10, 10]
    metrics = dict((a["outcome"], v) for a, v in otel.metrics()["app.cleanup.items"])
    assert metrics["deleted"] == 30


async def test_a_failing_invocation_marks_its_span_without_the_raw_message(otel: Telemetry,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    container = FakeContainer()
    container.failures["query"] = [cosmos_error(401, "bad key AccountKey=leakedsecretvalue==")]
    use_fake_clients(monkeypatch, cosmos=container)
    from azure.functions.timer import TimerRequest

    from common.logs import InvocationFailed

    with pytest.raises(InvocationFailed):
        await CleanupTimer.main(TimerRequest(past_due=False), context("CleanupTimer"))
    [root] = otel.finished("CleanupTimer")
    assert root.status.status_code == StatusCode.ERROR
    assert "leakedsecretvalue" not in otel.exported_text()
    assert attributes(root.events[0])["exception.type"] == "CosmosHttpResponseError"


SECRET = "S3cr3t-Value-That-Must-Never-Leak-42"


async def test_no_secret_reaches_spans_metrics_or_logs(otel: Telemetry, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Every function runs with a known secret in its settings and its inputs; none of it is exported."""
    from azure.functions.timer import TimerRequest
    from azure.servicebus import exceptions as sb

    set_env(monkeypatch, AUTH_MODE="apikey", API_KEY=SECRET,
            ServiceBusConnection=f"Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={SECRET}",
            CosmosConnection=f"AccountEndpoint=https://x.documents.azure.com:443/;AccountKey={SECRET};",
            EtlStorage=f"DefaultEndpointsProtocol=https;AccountName=x;AccountKey={SECRET};",
            INPUT_QUEUE_NAME="in", OUTPUT_QUEUE_NAME="out", INVALID_QUEUE_NAME="invalid")
    bus = FakeServiceBus("out", "invalid")
    bus.senders["out"].failures = [sb.ServiceBusConnectionError(message=f"link failed SharedAccessKey={SECRET}")]
    container, blobs = FakeContainer(), FakeBlobService()
    container.failures["upsert"] = [cosmos_error(503, f"unavailable AccountKey={SECRET}")]
    topic = FakeEventGridPublisher()
    topic.failures = [event_grid_error(503, f"unavailable aeg-sas-key={SECRET}")] * 20
    set_env(monkeypatch, EVENT_GRID_TOPIC_ENDPOINT="https://t.westeurope-1.eventgrid.azure.net/api/events",
            EVENT_PUBLISH_BUDGET_SECONDS="1")
    use_fake_clients(monkeypatch, bus=bus, cosmos=FakeContainer(), event_grid=topic)

    with caplog.at_level(logging.DEBUG):
        for key in (SECRET, SECRET[:-1], None):
            await HttpGreeting.main(http_request("POST", body={"name": "Personal Name"}, key=key), context("HttpGreeting"))
        for key in (SECRET, None):
            await PublishEvent.main(events_request({"card": SECRET}, key=key), context("PublishEvent"))
        await QueueProcessor.main(sb_trigger({"id": "a", "card": SECRET}), context("QueueProcessor"))
        await QueueProcessor.main(sb_trigger(SECRET.encode()), context("QueueProcessor"))
        # BlobEtl's write fails with the secret in the SDK's message (QueueProcessor had its own container).
        use_fake_clients(monkeypatch, cosmos=container, blobs=blobs)
        await BlobEtl.main(blob_created(blobs, "incoming/x.json", json.dumps(
            [{"id": "a", "data": SECRET, "source": "s", "type": "t"}]).encode()), context("BlobEtl"))
        await CleanupTimer.main(TimerRequest(past_due=True), context("CleanupTimer"))
    exported = otel.exported_text() + "\n" + caplog.text
    # The failures that carried the secret were met: BlobEtl's write, PublishEvent's publishes.
    assert container.failures["upsert"] == [] and topic.calls >= 2
    assert len(otel.finished()) >= 8
    assert SECRET not in exported
    assert SECRET[:-1] not in exported
    assert "Personal Name" not in exported


def test_with_telemetry_off_nothing_is_configured_or_contacted() -> None:
    """A fresh process with no telemetry settings: functions run, no SDK or exporter is loaded."""
    code = f"""
import asyncio, json, os, sys
sys.path.insert(0, {str(APP_ROOT)!r})
os.environ['API_KEY'] = 'k-123456789'
import azure.functions as func
import HttpGreeting
from tests.conftest import FakeContext, FakeTraceContext
req = func.HttpRequest('GET', 'http://x/api/HttpGreeting', headers={{'x-api-key': 'k-123456789'}}, params={{'name': 'A'}}, body=b'')
resp = asyncio.run(HttpGreeting.main(req, FakeContext(trace_context=FakeTraceContext())))
from common import telemetry
loaded = sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'azure.monitor', 'opentelemetry.exporter')))
print(json.dumps([resp.status_code, loaded, telemetry.trace_headers()]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=APP_ROOT)
    assert result.returncode == 0, result.stderr
    status, loaded, headers = json.loads(result.stdout.strip().splitlines()[-1])
    assert status == 200 and loaded == []
    assert headers == {}  # outside an invocation there is no trace to propagate


async def test_telemetry_off_still_propagates_the_host_trace_to_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = FakeServiceBus("out", "invalid")
    use_fake_clients(monkeypatch, bus=bus, cosmos=FakeContainer())
    set_env(monkeypatch, INPUT_QUEUE_NAME="in", OUTPUT_QUEUE_NAME="out", INVALID_QUEUE_NAME="invalid")
    await QueueProcessor.main(sb_trigger({"id": "a"}), context("QueueProcessor"))
    assert bus.queues["out"].messages[0].application_properties["traceparent"].split("-")[1] == HOST_TRACE


def test_connection_string_selects_the_azure_monitor_distro(monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.monitor.opentelemetry as distro

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(distro, "configure_azure_monitor", lambda **kwargs: calls.append(kwargs))
    set_env(monkeypatch, APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=00000000-0000-0000-0000-000000000000")
    with telemetry.span("x"):
        pass
    assert calls == [{"connection_string": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
                      "logger_name": "app"}]
    telemetry.reset()
    set_env(monkeypatch, IDENTITY_ENDPOINT="http://localhost:1/msi", AZURE_CLIENT_ID="cid")
    with telemetry.span("x"):
        pass
    assert type(calls[1]["credential"]).__name__ == "ManagedIdentityCredential"
    telemetry.reset()
    set_env(monkeypatch, PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY="true")
    with telemetry.span("x"):
        pass
    assert len(calls) == 2  # the worker configured it already: not twice


async def test_a_malformed_connection_string_leaves_telemetry_off_not_the_functions(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    set_env(monkeypatch, APPLICATIONINSIGHTS_CONNECTION_STRING="not a connection string", API_KEY="k-123456789")
    with caplog.at_level(logging.ERROR):
        for _ in range(2):
            response = await HttpGreeting.main(http_request(params={"name": "A"}, key="k-123456789"), context("HttpGreeting"))
            assert response.status_code == 200
    assert caplog.text.count("APPLICATIONINSIGHTS_CONNECTION_STRING") == 1  # said once, not per invocation


def test_console_mode_prints_spans_locally() -> None:
    """TELEMETRY_CONSOLE=true (for make start): spans are printed, nothing is sent anywhere."""
    code = f"""
import asyncio, os, sys
sys.path.insert(0, {str(APP_ROOT)!r})
os.environ.update(API_KEY='k-123456789', TELEMETRY_CONSOLE='true')
import azure.functions as func
import HttpGreeting
from tests.conftest import FakeContext, FakeTraceContext
req = func.HttpRequest('GET', 'http://x/api/HttpGreeting', headers={{'x-api-key': 'k-123456789'}}, params={{'name': 'A'}}, body=b'')
asyncio.run(HttpGreeting.main(req, FakeContext(trace_context=FakeTraceContext())))
print('azure monitor loaded:', 'azure.monitor' in ' '.join(sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=APP_ROOT)
    assert result.returncode == 0, result.stderr
    assert '"name": "HttpGreeting"' in result.stdout
    assert HOST_TRACE in result.stdout
    assert "azure monitor loaded: False" in result.stdout  # the metrics follow, printed at exit


async def test_a_failed_invocation_is_one_exception_item(otel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exception event (an item in Application Insights' exceptions) is on the span that raised,
    not again on every span the error passes through."""
    from azure.servicebus import exceptions as sb

    bus = FakeServiceBus("out", "invalid")
    bus.senders["out"].failures = [sb.ServiceBusAuthorizationError(message="no Send claim")]
    use_fake_clients(monkeypatch, bus=bus, cosmos=FakeContainer())
    set_env(monkeypatch, INPUT_QUEUE_NAME="in", OUTPUT_QUEUE_NAME="out", INVALID_QUEUE_NAME="invalid")
    with pytest.raises(Exception, match="ServiceBusAuthorizationError"):
        await QueueProcessor.main(sb_trigger({"id": "a"}), context("QueueProcessor"))
    spans = otel.finished()
    events = [(span.name, event.name) for span in spans for event in span.events if event.name == "exception"]
    assert events == [("send out", "exception")]
    assert {span.name: span.status.status_code for span in spans} == {
        "upsert records": StatusCode.UNSET, "send out": StatusCode.ERROR, "process in": StatusCode.ERROR}


def test_the_app_names_its_telemetry_as_the_function_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """cloud_RoleName is service.name: the function app's name, as the host reports it, not
    unknown_service:python (the distro's default detectors leave it unset on Functions)."""
    from opentelemetry.sdk.resources import Resource

    monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "")
    monkeypatch.delenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS")  # restored to absent afterwards
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("WEBSITE_SITE_NAME", "func-demo")
    monkeypatch.setenv("FUNCTIONS_WORKER_RUNTIME", "python")
    telemetry.prepare_resource_detection()
    assert Resource.create().attributes["service.name"] == "func-demo"


def test_sampling_is_the_fixed_percentage_the_host_reads_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """infra/ sets OTEL_TRACES_SAMPLER(_ARG) for the host and the worker; the distro the app
    configures reads them, so both decide by the same trace-id hash."""
    from azure.monitor.opentelemetry._utils.configurations import _get_configurations

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "microsoft.fixed_percentage")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    configuration = _get_configurations(connection_string="InstrumentationKey=00000000-0000-0000-0000-000000000000")
    assert configuration["sampling_ratio"] == 0.25
    assert "traces_per_second" not in configuration
