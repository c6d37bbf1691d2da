"""Traces and metrics through OpenTelemetry, to Application Insights when configured.

Each function wraps its work in an invocation span that continues the trace
the Functions host started (``context.trace_context``)::

    from common import telemetry

    with telemetry.invocation_span(context, "QueueProcessor", kind="consumer",
                                   attributes={"messaging.destination.name": queue}):
        ...
        telemetry.count("app.queue.messages", outcome="forwarded")

Where telemetry goes is decided once, on the first invocation:

- ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set: the Azure Monitor OpenTelemetry
  distro (``configure_azure_monitor``) exports traces, metrics and logs, with the
  managed identity when the code runs in Azure. If the worker already set the
  distro up (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``) it is not set up twice.
- ``TELEMETRY_CONSOLE=true`` (local development): spans and metrics print to the console.
- otherwise: the OpenTelemetry API's no-op providers. Nothing connects anywhere,
  and a span or a counter costs a few microseconds (see ``make bench``).

Nothing here is imported at module import time beyond the standard library, so
loading a function costs no OpenTelemetry import. Attributes are chosen, never
copied from input: names, counts, outcomes and ids, no bodies and no secrets.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter, MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = [
    "count",
    "invocation_span",
    "record_duration",
    "reset",
    "span",
    "trace_headers",
    "use_providers",
]

SpanKindName = Literal["server", "client", "consumer", "producer", "internal"]
INSTRUMENTATION = "serverless-patterns"

_lock = threading.Lock()
_configured = False
_tracer: Tracer | None = None
_meter: Meter | None = None
_instruments: dict[str, Any] = {}


#: Exported to Application Insights: the app's loggers ("app.<function>", "app.common.*"). With the
#: worker exporting OpenTelemetry, the host drops its own "Function.*" logs (they are expected from
#: the worker), so what operators see of an invocation is what these loggers say.
APP_LOGGER = "app"


def prepare_resource_detection() -> None:
    """Name the app's telemetry as the host names its own: ``service.name`` (Application Insights'
    ``cloud_RoleName``) is the function app's name (``WEBSITE_SITE_NAME``).

    The distro's default detectors (App Service, VM) leave ``service.name`` to the Functions
    detector whenever ``FUNCTIONS_WORKER_RUNTIME`` is set, so without it every envelope carries
    ``unknown_service:python``. The Python worker selects the same detector when it configures
    the distro itself. An explicit ``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS`` or ``OTEL_SERVICE_NAME`` wins.
    """
    import os

    os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_functions")


def _configure_azure_monitor(connection_string: str) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    from common import settings

    prepare_resource_detection()
    # Sampling comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, read by the distro (the host's
    # exporter reads the same two settings): infra/ sets a fixed percentage for both.
    kwargs: dict[str, Any] = {"connection_string": connection_string, "logger_name": APP_LOGGER}
    identity = settings.identity_settings()
    if identity.in_azure:
        # The exporter runs on its own threads: it needs a sync credential, not the app's async one.
        from azure.identity import ManagedIdentityCredential

        kwargs["credential"] = ManagedIdentityCredential(client_id=identity.client_id)
    configure_azure_monitor(**kwargs)


def _configure_console(service_name: str) -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    resource = Resource.create({"service.name": service_name})
    tracer_provider = SdkTracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000)
    metrics.set_meter_provider(SdkMeterProvider(resource=resource, metric_readers=[reader]))


def _ensure_configured() -> None:
    global _configured, _tracer, _meter
    if _configured:
        return
    with _lock:
        if _configured:
            return
        from opentelemetry import metrics, trace

        from common import settings

        config = settings.telemetry_settings()
        try:
            if config.connection_string and not config.worker_configures_azure_monitor:
                _configure_azure_monitor(config.connection_string)
            elif config.console:
                _configure_console(config.service_name)
        except Exception as exc:  # noqa: BLE001 - telemetry must never take the functions down
            from common.logs import describe_error

            logging.getLogger("app.common.telemetry").error(
                "Telemetry is off: setting it up failed (check APPLICATIONINSIGHTS_CONNECTION_STRING "
                "and TELEMETRY_CONSOLE): %s", describe_error(exc))
        if _tracer is None:
            _tracer = trace.get_tracer(INSTRUMENTATION)
            _meter = metrics.get_meter(INSTRUMENTATION)
        _configured = True


def use_providers(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
    """Send telemetry to these providers (tests: in-memory exporters) instead of configuring any."""
    global _configured, _tracer, _meter
    with _lock:
        _tracer = tracer_provider.get_tracer(INSTRUMENTATION)
        _meter = meter_provider.get_meter(INSTRUMENTATION)
        _instruments.clear()
        _configured = True


def reset() -> None:
    """Back to "not configured yet" (tests only)."""
    global _configured, _tracer, _meter
    with _lock:
        _configured = False
        _tracer = None
        _meter = None
        _instruments.clear()


def _kind(name: SpanKindName) -> Any:
    from opentelemetry.trace import SpanKind

    return {"server": SpanKind.SERVER, "client": SpanKind.CLIENT, "consumer": SpanKind.CONSUMER,
            "producer": SpanKind.PRODUCER, "internal": SpanKind.INTERNAL}[name]


def _parent_context(context: Any) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    trace_context = getattr(context, "trace_context", None)
    carrier = {}
    if trace_context is not None and getattr(trace_context, "trace_parent", None):
        carrier["traceparent"] = trace_context.trace_parent
        if getattr(trace_context, "trace_state", None):
            carrier["tracestate"] = trace_context.trace_state
    return TraceContextTextMapPropagator().extract(carrier)


def _links(traceparents: Sequence[str]) -> list[Any]:
    from opentelemetry.trace import Link, get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    links = []
    for value in traceparents:
        span_context = get_current_span(TraceContextTextMapPropagator().extract({"traceparent": value})).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context))
    return links


def _trace_id_of(parent: Any) -> int:
    from opentelemetry.trace import get_current_span

    return get_current_span(parent).get_span_context().trace_id


@contextlib.contextmanager
def invocation_span(context: Any, name: str, *, kind: SpanKindName = "internal",
                    attributes: Mapping[str, Any] | None = None,
                    links_from: Sequence[str] = (), continues: str | None = None) -> Iterator[Span]:
    """The invocation's span, a child of the host's trace; ``links_from`` are traceparents to link
    (for example the producer of a message). An exception is recorded and re-raised.

    ``continues`` is a traceparent the invocation's work belongs to (a CloudEvent's, set by the
    request that published it): when it is valid and in another trace than the host's, the span
    is its child, so the request's trace goes on here, and the host's invocation is linked instead.
    """
    _ensure_configured()
    assert _tracer is not None
    parent = _parent_context(context)
    links = list(links_from)
    if continues:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        upstream = TraceContextTextMapPropagator().extract({"traceparent": continues})
        upstream_trace = _trace_id_of(upstream)
        if upstream_trace and upstream_trace != _trace_id_of(parent):
            host_traceparent = getattr(getattr(context, "trace_context", None), "trace_parent", None)
            if host_traceparent:
                links.append(host_traceparent)
            parent = upstream
        links = [value for value in links if value != continues]  # a parent is not also a link
    base = {"faas.invocation_id": getattr(context, "invocation_id", None), "faas.name": name}
    with _tracer.start_as_current_span(
            name, context=parent, kind=_kind(kind), links=_links(links),
            attributes={k: v for k, v in {**base, **dict(attributes or {})}.items() if v is not None},
            record_exception=False, set_status_on_exception=False) as current:
        with _record_errors(current):
            yield current


@contextlib.contextmanager
def span(name: str, *, kind: SpanKindName = "internal", attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A child of the current span (a batch, a page, a send)."""
    _ensure_configured()
    assert _tracer is not None
    with _tracer.start_as_current_span(name, kind=_kind(kind), attributes=dict(attributes or {}),
                                       record_exception=False, set_status_on_exception=False) as current:
        with _record_errors(current):
            yield current


@contextlib.contextmanager
def _record_errors(current: Span) -> Iterator[None]:
    """Mark the span failed with a masked description. The SDK's own exception recording is off:
    it would copy the raw message and stack trace, which can hold a secret, into the span.

    The exception event (an item in Application Insights' ``exceptions``) is added once, on the
    span where the error was raised; the spans it passes through on its way out only fail.
    """
    try:
        yield
    except BaseException as exc:
        from opentelemetry.trace import Status, StatusCode

        from common.logs import describe_error

        description = describe_error(exc)
        current.set_status(Status(StatusCode.ERROR, description))
        if not getattr(exc, "_app_span_recorded", False):
            current.add_event("exception", {"exception.type": type(exc).__name__, "exception.message": description})
            with contextlib.suppress(AttributeError, TypeError):  # a few built-in exceptions take no attributes
                exc._app_span_recorded = True  # type: ignore[attr-defined]
        raise


def trace_headers() -> dict[str, str]:
    """W3C trace context of the current span for an outgoing message: ``traceparent``
    (and ``tracestate``) plus ``Diagnostic-Id``, the property Service Bus tooling reads."""
    _ensure_configured()
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    if "traceparent" in carrier:
        carrier["Diagnostic-Id"] = carrier["traceparent"]
    return carrier


def _instrument(kind: str, name: str, unit: str, description: str) -> Any:
    instrument = _instruments.get(name)
    if instrument is None:
        _ensure_configured()
        assert _meter is not None
        factory = _meter.create_counter if kind == "counter" else _meter.create_histogram
        instrument = factory(name, unit=unit, description=description)
        _instruments[name] = instrument
    return instrument


#: Every metric the app records: name -> (instrument kind, unit, description).
METRICS: dict[str, tuple[str, str, str]] = {
    "app.greeting.requests": ("counter", "{request}", "HttpGreeting requests by outcome and status"),
    "http.server.request.duration": ("histogram", "s", "Duration of HTTP requests served"),
    "app.queue.messages": ("counter", "{message}", "QueueProcessor messages by outcome"),
    "app.queue.send_retries": ("counter", "{retry}", "Service Bus sends retried"),
    "app.events.requests": ("counter", "{request}", "PublishEvent requests by outcome and status"),
    "app.orders.requests": ("counter", "{request}", "Orders API requests by outcome and status"),
    "app.events.publish_retries": ("counter", "{retry}", "Event Grid publishes retried"),
    "messaging.process.duration": ("histogram", "s", "Duration of processing one message"),
    "app.etl.records": ("counter", "{record}", "BlobEtl records by outcome"),
    "app.etl.duration": ("histogram", "s", "Duration of one BlobEtl run"),
    "app.cleanup.items": ("counter", "{item}", "CleanupTimer items by outcome"),
    "app.cleanup.duration": ("histogram", "s", "Duration of one CleanupTimer run"),
}


def count(name: str, amount: int = 1, /, **attributes: str | int) -> None:
    """Add to a counter of :data:`METRICS`; keep attribute values low-cardinality."""
    if amount:
        kind, unit, description = METRICS[name]
        _instrument(kind, name, unit, description).add(amount, attributes)


def record_duration(name: str, seconds: float, /, **attributes: str | int) -> None:
    kind, unit, description = METRICS[name]
    _instrument(kind, name, unit, description).record(seconds, attributes)
