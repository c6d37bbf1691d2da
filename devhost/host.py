"""The development host: runs the function app locally without Azure Functions Core Tools.

A development tool, never deployed. It loads the app through Microsoft's
Python runtime library for v1 apps (as the contract tests do, see
:mod:`devhost.runtime_host`) and drives the triggers from local emulators:

- HTTP functions at ``/api/<route or FunctionName>`` with the methods their
  binding allows (function keys are not enforced, as with Core Tools);
- ``POST /admin/functions/<FunctionName>`` with ``{"input": "..."}`` runs a
  non-HTTP function on demand (timer: input ignored; blob and Event Grid:
  ``container/name``; Service Bus and Storage queue: the message body), as Core
  Tools allows;
- ``POST /runtime/webhooks/eventgrid?functionName=<FunctionName>`` takes Event
  Grid deliveries (``aeg-event-type: Notification``, a JSON array of events; the
  ``SubscriptionValidation`` handshake too), as Core Tools' webhook does;
- timers fire on their six-field NCRONTAB schedule;
- blob triggers, and the Event Grid triggers ``devhost/event-subscriptions.json``
  subscribes to blob-created events, poll their container and run for new or
  changed blobs, remembering what they processed (name and ETag) across restarts
  (no Event Grid runs locally: this stands in for a storage account's system topic);
- Storage queue triggers receive from Azurite with host.json's ``queues`` options
  (batch size, visibility, ``maxDequeueCount`` then the ``-poison`` queue), renewing
  a message's visibility while its invocation runs, as the queue extension does;
  with ``role="queues"`` a process runs only these (``make start ARGS="--workers 4"``
  starts four such processes beside the main one);
- Service Bus triggers receive from the queue when the connection points at
  a namespace or emulator that answers; otherwise the host says so at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devhost.ncrontab import Schedule
from devhost.runtime_host import FunctionSpec, RuntimeHost, blob_created_event, http_response

_log = logging.getLogger("devhost")
_SETTING = re.compile(r"%([^%]+)%")
BLOB_POLL_SECONDS = 2.0
POISON_BLOB_THRESHOLD = 5
#: The Event Grid subscriptions the development host stands in for (infra/blob-events.bicep in Azure).
EVENT_SUBSCRIPTIONS = Path(__file__).resolve().parent / "event-subscriptions.json"
#: How long a received queue message stays invisible before its renewal (the extension uses 10 minutes).
QUEUE_LEASE_SECONDS = float(os.environ.get("DEVHOST_QUEUE_LEASE_SECONDS", "60"))


class DevHostError(RuntimeError):
    pass


def event_chain_notes(functions: Any, environ: Any) -> list[str]:
    """What of the event chain (PublishEvent -> Event Grid -> Service Bus -> QueueProcessor) runs here.

    No Event Grid emulator exists, so the hop from PublishEvent to Service Bus never runs locally;
    the host says so instead of pretending.
    """
    if "PublishEvent" not in functions:
        return []
    endpoint = str(environ.get("EVENT_GRID_TOPIC_ENDPOINT") or "").strip()
    if endpoint:
        first = (f"event chain: PublishEvent publishes to {endpoint} with your Azure sign-in (az login; "
                 "it needs 'EventGrid Data Sender' on the topic); Event Grid delivers to the topic's Service Bus "
                 "queue in Azure, which this host receives from only if 'ServiceBusConnection' points at that namespace")
    else:
        first = ("event chain: no Event Grid emulator exists, and EVENT_GRID_TOPIC_ENDPOINT is empty: POST /api/events "
                 "authenticates and validates, then answers 500 naming the setting (set it to a topic you may publish "
                 "to, or deploy with azd up)")
    return [first, "event chain, last hop: POST /admin/functions/QueueProcessor with {\"input\": \"<a CloudEvent as JSON>\"} "
                   "stores the result in the local Cosmos DB (docs/event-chain.md)"]


def say(message: str) -> None:
    print(f"[devhost {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def load_local_settings(path: Path) -> dict[str, str]:
    """``Values`` of local.settings.json into the environment; variables already set win."""
    try:
        document = json.loads(path.read_text("utf-8-sig"))
    except FileNotFoundError:
        raise DevHostError(f"{path} is missing: copy local.settings.example.json to it") from None
    except json.JSONDecodeError as exc:
        raise DevHostError(f"{path} is not valid JSON: {exc}") from None
    values = {str(k): str(v) for k, v in (document.get("Values") or {}).items()}
    for key, value in values.items():
        os.environ.setdefault(key, value)
    return values


def resolve(value: str) -> str:
    """Replace ``%SETTING%`` expressions in a binding value, as the host does; a setting that is
    missing or empty is a :class:`DevHostError` naming it."""
    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if not os.environ.get(name, "").strip():
            state = "is not set" if name not in os.environ else "is empty"
            raise DevHostError(f"binding expression %{name}% names an app setting that {state}")
        return os.environ[name]

    return _SETTING.sub(lookup, value)


#: How long a stopping host lets running invocations finish.
SHUTDOWN_GRACE_SECONDS = 20.0


def unresolved_bindings(spec: FunctionSpec) -> list[str]:
    """What keeps a function from running: every binding value whose ``%SETTING%`` is missing or
    empty, as "'<setting>' (<binding type> <property>) is not set" (or "is empty")."""
    problems = []
    for binding in spec.bindings:
        for key, value in binding.raw.items():
            if not isinstance(value, str):
                continue
            for name in _SETTING.findall(value):
                if not os.environ.get(name, "").strip():
                    state = "is not set" if name not in os.environ else "is empty"
                    problems.append(f"'{name}' ({binding.type} {key}) {state}")
    return problems


@dataclass
class Invocation:
    function: str
    id: str
    ok: bool
    duration_ms: float
    error: str | None = None


def http_status_of(response: Any) -> int | None:
    """The status an HTTP function answered with, or None for another trigger."""
    value = getattr(getattr(response, "return_value", None), "http", None)
    status = getattr(value, "status_code", None) if value is not None else None
    try:
        return int(status) if status else None
    except ValueError:
        return None


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP function's route, matched as the Functions host does: case-insensitively, each
    ``{name}`` segment matching one segment and ``{name?}`` none or one."""

    template: str
    methods: frozenset[str]
    handler: Callable[[Any, dict[str, str]], Awaitable[Any]]

    def params(self, path: str) -> dict[str, str] | None:
        """The route parameters when ``path`` (below /api/) matches, else None."""
        wanted = [part for part in self.template.split("/") if part]
        given = [part for part in path.strip("/").split("/") if part]
        found: dict[str, str] = {}
        for index, part in enumerate(wanted):
            optional = part.startswith("{") and part.endswith("?}")
            if index >= len(given):
                if optional:
                    continue
                return None
            if part.startswith("{") and part.endswith("}"):
                found[part.strip("{}?").split(":")[0]] = given[index]
            elif part.lower() != given[index].lower():
                return None
        return found if len(given) <= len(wanted) else None


async def dispatch_http(routes: list[HttpRoute], request: Any) -> Any:
    """The function whose route and method match, else 404, as Azure answers both a wrong path and a
    wrong method (the host routes by method and path together)."""
    from aiohttp import web

    path = request.match_info.get("path", "")
    for route in routes:
        params = route.params(path)
        if params is not None and request.method.upper() in route.methods:
            return await route.handler(request, params)
    return web.Response(status=404)


class DevHost:
    def __init__(self, app_root: Path, *, port: int = 7071, state_dir: Path | None = None,
                 host: str = "127.0.0.1", role: str = "all") -> None:
        """``role``: ``all`` drives every trigger; ``front`` all but the Storage queue triggers
        (worker processes run those); ``queues`` only the Storage queue triggers, with no HTTP."""
        if role not in ("all", "front", "queues"):
            raise DevHostError(f"role must be 'all', 'front' or 'queues', not {role!r}")
        self.role = role
        self.app_root = app_root.resolve()
        self.port = port
        self.bind = host
        self.state_dir = (state_dir or self.app_root / ".emulators").resolve()
        self.runtime = RuntimeHost(self.app_root)
        self.tasks: list[asyncio.Task[None]] = []
        #: Invocations of queue messages still running: a shutdown lets them finish first.
        self._in_flight: set[asyncio.Task[None]] = set()
        self._receipts_path = self.state_dir / "devhost-blob-receipts.json"
        self._receipts: dict[str, str] = {}

    # ------------------------------------------------------------ invocation

    async def invoke(self, name: str, trigger: Any) -> tuple[Invocation, Any]:
        started = time.perf_counter()
        response = await self.runtime.invoke(name, *trigger, check=False)
        ok = self.runtime.succeeded(response)
        record = Invocation(name, response.invocation_id, ok, round((time.perf_counter() - started) * 1000, 2),
                            None if ok else response.result.exception.message)
        outcome = "succeeded" if ok else f"failed: {record.error}"
        status = http_status_of(response) if ok else None
        if status is not None:
            outcome += f" (HTTP {status})"
        say(f"{name} ({record.id[:8]}) {outcome} in {record.duration_ms} ms")
        return record, response

    # ------------------------------------------------------------------ HTTP

    def _http_handler(self, spec: FunctionSpec) -> Callable[[Any, dict[str, str]], Awaitable[Any]]:
        from aiohttp import web

        async def handle(request: web.Request, route_params: dict[str, str]) -> web.StreamResponse:
            body = await request.read()
            trigger = self.runtime.http_request(
                spec.name, request.method, str(request.url), headers=dict(request.headers),
                query=dict(request.query), body=body, route_params=route_params)
            record, response = await self.invoke(spec.name, trigger)
            if not record.ok:
                return web.json_response({"error": "Function invocation failed", "invocationId": record.id},
                                         status=500)
            status, headers, payload = http_response(response)
            reply = web.Response(status=status, body=payload)
            for key, value in headers.items():
                reply.headers[key] = value
            return reply

        return handle

    async def _admin_invoke(self, request: Any) -> Any:
        from aiohttp import web

        name = request.match_info["name"]
        spec = self.runtime.functions.get(name)
        if spec is None:
            return web.json_response({"error": f"no function named {name!r}"}, status=404)
        try:
            payload = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError:
            return web.json_response({"error": "body must be JSON such as {\"input\": \"...\"}"}, status=400)
        text = str((payload or {}).get("input") or "")
        kind = spec.trigger.type.lower()
        if kind == "httptrigger":
            return web.json_response({"error": f"{name} is an HTTP function: call its route"}, status=400)
        if kind == "timertrigger":
            trigger = self.runtime.timer(name)
        elif kind == "servicebustrigger":
            trigger = self.runtime.service_bus(name, text.encode(), message_id=uuid.uuid4().hex,
                                               content_type="application/json")
        elif kind == "eventgridtrigger":
            container, _, blob_name = text.partition("/")
            if not container or not blob_name:
                return web.json_response({"error": "input must be the blob path 'container/name'"}, status=400)
            from azure.core.exceptions import AzureError, ResourceNotFoundError

            subscription = self._subscriptions().get(name) or {}
            try:
                properties = await self._blob_service(str(subscription.get("connection") or "AzureWebJobsStorage")) \
                    .get_blob_client(container, blob_name).get_blob_properties()
            except ResourceNotFoundError:
                return web.json_response({"error": f"no blob {container}/{blob_name}: upload it first "
                                                   "(python -m devhost.upload <file>)"}, status=404)
            except AzureError as exc:
                return web.json_response({"error": f"blob storage cannot be reached ({type(exc).__name__}): "
                                                   "are the emulators running?"}, status=503)
            trigger = self.runtime.event_grid(name, blob_created_event(
                container, blob_name, etag=properties.etag, content_length=properties.size))
        elif kind == "queuetrigger":
            trigger = self.runtime.queue(name, text.encode())
        else:
            return web.json_response({"error": f"trigger type {spec.trigger.type} is not supported"}, status=400)
        record, _ = await self.invoke(name, trigger)
        return web.json_response({"invocationId": record.id, "status": "succeeded" if record.ok else "failed",
                                  "durationMs": record.duration_ms, "error": record.error}, status=202)

    async def _status(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"state": "Running", "functions": sorted(self.runtime.functions),
                                  "host": "devhost (development only)"})

    # ---------------------------------------------------------------- timers

    async def _run_timer(self, spec: FunctionSpec) -> None:
        schedule_text = resolve(str(spec.trigger.raw.get("schedule", "")))
        schedule = Schedule.parse(schedule_text)
        if spec.trigger.raw.get("runOnStartup"):
            await self.invoke(spec.name, self.runtime.timer(spec.name))
        while True:
            now = datetime.now(UTC)
            due = schedule.next_after(now)
            say(f"{spec.name}: next run at {due.isoformat()} ({schedule_text})")
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            await self.invoke(spec.name, self.runtime.timer(spec.name))

    # ----------------------------------------------------------------- blobs

    def _blob_service(self, connection: str) -> Any:
        from common import clients

        return clients.blob_service_client(connection)

    def _subscriptions(self) -> dict[str, dict[str, Any]]:
        """devhost/event-subscriptions.json: function name -> the blob container whose new blobs it gets."""
        try:
            document = json.loads(EVENT_SUBSCRIPTIONS.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        return {name: entry for name, entry in document.items() if not name.startswith("$")}

    def _load_receipts(self) -> None:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            self._receipts = json.loads(self._receipts_path.read_text())

    def _save_receipts(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._receipts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._receipts, indent=1, sort_keys=True))
        tmp.replace(self._receipts_path)

    async def _watch_blobs(self, spec: FunctionSpec, subscription: dict[str, Any]) -> None:
        """Deliver a BlobCreated event to ``spec`` for every new or changed blob of the subscribed
        container, at least once: a failed delivery is retried on the next poll, up to
        ``POISON_BLOB_THRESHOLD`` times for one version (Event Grid retries, then dead-letters)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        connection = str(subscription.get("connection") or "AzureWebJobsStorage")
        container = resolve(str(subscription.get("container") or ""))
        failures: dict[str, int] = {}
        warned = False
        say(f"{spec.name}: BlobCreated events of container '{container}' (standing in for Event Grid)")
        while True:
            try:
                container_client = self._blob_service(connection).get_container_client(container)
                async for blob in container_client.list_blobs():
                    key = f"{spec.name}/{container}/{blob.name}"
                    if self._receipts.get(key) == blob.etag:
                        continue
                    record, _ = await self.invoke(spec.name, self.runtime.event_grid(spec.name, blob_created_event(
                        container, blob.name, etag=blob.etag, content_length=blob.size)))
                    if record.ok:
                        failures.pop(key, None)
                        self._receipts[key] = blob.etag
                    else:
                        failures[key] = failures.get(key, 0) + 1
                        if failures[key] >= POISON_BLOB_THRESHOLD:
                            say(f"{spec.name}: {container}/{blob.name} failed {failures[key]} times; "
                                "giving up on this version (as Event Grid dead-letters an event)")
                            self._receipts[key] = blob.etag
                    self._save_receipts()
                warned = False
            except ResourceNotFoundError:
                if not warned:
                    say(f"{spec.name}: container '{container}' does not exist yet")
                    warned = True
            except AzureError as exc:
                if not warned:
                    say(f"{spec.name}: cannot list '{container}': {type(exc).__name__}")
                    warned = True
            await asyncio.sleep(BLOB_POLL_SECONDS)

    async def _event_grid_webhook(self, request: Any) -> Any:
        """Core Tools' ``/runtime/webhooks/eventgrid``: 202 once every event's invocation succeeded,
        500 otherwise (Event Grid then delivers again), the validation handshake answered."""
        from aiohttp import web

        name = request.query.get("functionName", "")
        spec = self.runtime.functions.get(name)
        if spec is None or spec.trigger.type.lower() != "eventgridtrigger":
            return web.json_response({"error": f"no Event Grid function named {name!r}"}, status=404)
        try:
            events = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "the body must be a JSON array of events"}, status=400)
        events = events if isinstance(events, list) else [events]
        kind = request.headers.get("aeg-event-type", "")
        if kind == "SubscriptionValidation":
            code = ((events[0] if events else {}).get("data") or {}).get("validationCode")
            return web.json_response({"validationResponse": code})
        if kind != "Notification":
            return web.json_response({"error": "aeg-event-type must be Notification or SubscriptionValidation"},
                                     status=400)
        results = [await self.invoke(name, self.runtime.event_grid(name, event)) for event in events
                   if isinstance(event, dict)]
        if all(record.ok for record, _ in results):
            return web.Response(status=202)
        return web.json_response({"error": "Function invocation failed"}, status=500)

    # --------------------------------------------------------- Storage queues

    def _queue_options(self) -> dict[str, float]:
        """host.json ``extensions.queues`` with the extension's defaults (visibilityTimeout and
        maxPollingInterval in seconds)."""
        from common.host_config import timespan_seconds

        try:
            document = json.loads((self.app_root / "host.json").read_text("utf-8"))
        except FileNotFoundError:
            document = {}
        options = ((document.get("extensions") or {}).get("queues") or {})
        batch = int(options.get("batchSize", 16))
        return {"batchSize": batch, "newBatchThreshold": int(options.get("newBatchThreshold", max(1, batch // 2))),
                # The app setting overrides host.json, as in Azure.
                "maxDequeueCount": int(os.environ.get("AzureFunctionsJobHost__extensions__queues__maxDequeueCount")
                                       or options.get("maxDequeueCount", 5)),
                "visibilityTimeout": timespan_seconds("extensions.queues.visibilityTimeout",
                                                      options.get("visibilityTimeout", "00:00:00")),
                "maxPollingInterval": timespan_seconds("extensions.queues.maxPollingInterval",
                                                       options.get("maxPollingInterval", "00:01:00"))}

    async def _poll_queue(self, spec: FunctionSpec) -> None:
        from common import clients

        connection = str(spec.trigger.raw.get("connection") or "AzureWebJobsStorage")
        queue_name = resolve(str(spec.trigger.raw.get("queueName", "")))
        options = self._queue_options()
        queue = clients.storage_queue(queue_name, connection)
        poison = clients.storage_queue(f"{queue_name}-poison", connection)
        in_flight: set[asyncio.Task[None]] = set()
        idle = 0.1
        say(f"{spec.name}: receiving from Storage queue '{queue_name}' (batch {int(options['batchSize'])})")
        while True:
            if len(in_flight) > options["newBatchThreshold"]:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            messages = [message async for message in queue.receive_messages(
                messages_per_page=int(options["batchSize"]), max_messages=int(options["batchSize"]),
                visibility_timeout=int(QUEUE_LEASE_SECONDS))]
            for message in messages:
                task = asyncio.create_task(self._handle_queue_message(spec, queue, poison, message, options))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if messages:
                idle = 0.1
            else:
                await asyncio.sleep(idle)
                idle = min(options["maxPollingInterval"], idle * 2)

    async def _handle_queue_message(self, spec: FunctionSpec, queue: Any, poison: Any, message: Any,
                                    options: dict[str, float]) -> None:
        """One message as the queue extension handles it: poison first when delivered too often,
        visibility renewed while the function runs, deleted on success, released after
        ``visibilityTimeout`` on failure, or moved to the poison queue on the last delivery."""
        if message.dequeue_count > options["maxDequeueCount"]:
            await self._to_poison(spec, queue, poison, message)
            return
        receipt = [message.pop_receipt]

        async def renew() -> None:
            while True:
                await asyncio.sleep(QUEUE_LEASE_SECONDS / 2)
                updated = await queue.update_message(message.id, pop_receipt=receipt[0],
                                                     visibility_timeout=int(QUEUE_LEASE_SECONDS))
                receipt[0] = updated.pop_receipt

        renewal = asyncio.create_task(renew())
        try:
            record, _ = await self.invoke(spec.name, self.runtime.queue(
                spec.name, bytes(message.content or b""), message_id=message.id,
                dequeue_count=message.dequeue_count, pop_receipt=message.pop_receipt,
                inserted=message.inserted_on))
        finally:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
        if record.ok:
            await queue.delete_message(message.id, receipt[0])
        elif message.dequeue_count >= options["maxDequeueCount"]:
            await self._to_poison(spec, queue, poison, message, receipt[0])
        else:
            await queue.update_message(message.id, pop_receipt=receipt[0],
                                       visibility_timeout=int(options["visibilityTimeout"]))

    async def _to_poison(self, spec: FunctionSpec, queue: Any, poison: Any, message: Any,
                         receipt: str | None = None) -> None:
        await poison.send_message(bytes(message.content or b""))
        await queue.delete_message(message.id, receipt or message.pop_receipt)
        say(f"{spec.name}: message {message.id} moved to the poison queue '{poison.queue_name}' "
            f"after {message.dequeue_count} deliveries")

    # ----------------------------------------------------------- Service Bus

    def _service_bus_reachable(self, connection: str) -> tuple[bool, str]:
        from common import settings
        from devhost.emulators import port_open

        try:
            conn = settings.service_bus_connection(connection)
        except settings.ConfigurationError as exc:
            return False, str(exc)
        parts = settings.connection_string_parts(conn.connection_string or "")
        if parts.get("usedevelopmentemulator", "").lower() == "true":
            endpoint = parts.get("endpoint", "")
            host = urlsplit(endpoint).hostname or "localhost"
            port = urlsplit(endpoint).port or 5672
            if not port_open(port, "127.0.0.1" if host == "localhost" else host):
                return False, f"no Service Bus emulator answers at {host}:{port}"
        return True, ""

    async def _receive(self, spec: FunctionSpec) -> None:
        from common import clients

        connection = str(spec.trigger.raw.get("connection") or "ServiceBusConnection")
        queue = resolve(str(spec.trigger.raw.get("queueName", "")))
        # The app's own cached client for this connection (closed by clients.close_all() in run()).
        client = clients.service_bus_client(connection)
        say(f"{spec.name}: receiving from queue '{queue}'")
        async with client.get_queue_receiver(queue) as receiver:
            while True:
                for message in await receiver.receive_messages(max_message_count=16, max_wait_time=5):
                    trigger = self.runtime.service_bus(
                        spec.name, b"".join(message.body), message_id=message.message_id,
                        delivery_count=message.delivery_count or 1, correlation_id=message.correlation_id,
                        content_type=message.content_type,
                        user_properties={(k.decode() if isinstance(k, bytes) else str(k)):
                                         (v.decode() if isinstance(v, bytes) else v)
                                         for k, v in (message.application_properties or {}).items()})
                    record, _ = await self.invoke(spec.name, trigger)
                    if record.ok:
                        await receiver.complete_message(message)
                    else:
                        await receiver.abandon_message(message)

    # ------------------------------------------------------------- lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        from aiohttp import web

        say("development host for local use only: it is not the Azure Functions host and is never deployed")
        await self.runtime.start()
        self._load_receipts()
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_get("/admin/host/status", self._status)
        app.router.add_post("/admin/functions/{name}", self._admin_invoke)
        app.router.add_post("/runtime/webhooks/eventgrid", self._event_grid_webhook)
        subscriptions = self._subscriptions()
        http_routes: list[HttpRoute] = []
        app.router.add_route("*", "/api/{path:.*}", lambda request: dispatch_http(http_routes, request))
        for spec in self.runtime.functions.values():
            kind = spec.trigger.type.lower()
            problems = unresolved_bindings(spec)
            if problems:
                say(f"{spec.name}: not started: {'; '.join(problems)}. Set it in local.settings.json "
                    "(local.settings.example.json has every setting)")
                continue
            if kind == "queuetrigger":
                if self.role != "front":
                    self.tasks.append(asyncio.create_task(self._poll_queue(spec), name=spec.name))
                continue
            if self.role == "queues":
                continue
            if kind == "httptrigger":
                route = str(spec.trigger.raw.get("route") or spec.name).strip("/")
                methods = [m.upper() for m in spec.trigger.raw.get("methods") or ["GET", "POST", "PUT", "DELETE", "PATCH"]]
                http_routes.append(HttpRoute(route, frozenset(methods), self._http_handler(spec)))
                say(f"{spec.name}: [{','.join(methods)}] http://localhost:{self.port}/api/{route}")
            elif kind == "timertrigger":
                self.tasks.append(asyncio.create_task(self._run_timer(spec), name=spec.name))
            elif kind == "eventgridtrigger":
                if spec.name in subscriptions:
                    self.tasks.append(asyncio.create_task(self._watch_blobs(spec, subscriptions[spec.name]),
                                                          name=spec.name))
                say(f"{spec.name}: Event Grid webhook http://localhost:{self.port}/runtime/webhooks/eventgrid"
                    f"?functionName={spec.name}")
            elif kind == "servicebustrigger":
                connection = str(spec.trigger.raw.get("connection") or "ServiceBusConnection")
                reachable, why = self._service_bus_reachable(connection)
                if reachable:
                    self.tasks.append(asyncio.create_task(self._receive(spec), name=spec.name))
                else:
                    say(f"{spec.name}: not triggered locally ({why}). Run the official Service Bus emulator "
                        f"(docker-compose.yml) or point '{connection}' at a namespace to enable it; "
                        f"POST /admin/functions/{spec.name} runs it on demand.")
            else:
                say(f"{spec.name}: trigger type {spec.trigger.type} is not driven by the development host")
        if self.role == "queues":
            for task in self.tasks:
                task.add_done_callback(_report_crash)
            say(f"queue worker {os.getpid()} running")
            try:
                await stop.wait()
            finally:
                await self._shutdown(None)
            return
        for note in event_chain_notes(self.runtime.functions, os.environ):
            say(note)
        for task in self.tasks:
            task.add_done_callback(_report_crash)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.bind, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._shutdown(runner)
            raise DevHostError(f"port {self.port} on {self.bind} is in use ({exc.strerror}): another 'make start' or "
                               f"'func start' is running, or pass another port (make start ARGS=\"--port 7072\")") from None
        say(f"listening on http://localhost:{self.port} (Ctrl-C stops)")
        try:
            await stop.wait()
        finally:
            await self._shutdown(runner)

    async def drain(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> int:
        """Let running invocations finish (as the host does on shutdown), for ``grace_seconds``;
        cancel what is still running then (its message returns to the queue). The number cancelled."""
        running = set(self._in_flight)
        if not running:
            return 0
        say(f"stopping: waiting up to {grace_seconds:g} s for {len(running)} running invocations")
        _, pending = await asyncio.wait(running, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if pending:
            say(f"stopping: {len(pending)} invocations did not finish in {grace_seconds:g} s and were stopped; "
                "their messages return to the queue and run again")
        return len(pending)

    async def _shutdown(self, runner: Any) -> None:
        say("stopping")
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        # The clients close after the invocations that use them (not under them: "Session is closed").
        await self.drain()
        if runner is not None:
            await runner.cleanup()
        from common import clients

        await clients.close_all()
        await self.runtime.stop()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        say(f"{task.get_name()}: trigger loop stopped: {type(task.exception()).__name__}: {task.exception()}")
