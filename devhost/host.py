"""The development host: runs the function app locally without Azure Functions Core Tools.

A development tool, never deployed. It loads the app through Microsoft's
Python runtime library for v1 apps (as the contract tests do, see
:mod:`devhost.runtime_host`) and drives the triggers from local emulators:

- HTTP functions at ``/api/<route or FunctionName>`` with the methods their
  binding allows (function keys are not enforced, as with Core Tools);
- ``POST /admin/functions/<FunctionName>`` with ``{"input": "..."}`` runs a
  non-HTTP function on demand (timer: input ignored; blob: ``container/name``;
  Service Bus: the message body), as Core Tools allows;
- timers fire on their six-field NCRONTAB schedule;
- blob triggers poll their container and run for new or changed blobs,
  remembering what they processed (name and ETag) across restarts;
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
from devhost.runtime_host import FunctionSpec, RuntimeHost, http_response

_log = logging.getLogger("devhost")
_SETTING = re.compile(r"%([^%]+)%")
BLOB_POLL_SECONDS = 2.0
POISON_BLOB_THRESHOLD = 5


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
                   "stores the result in the local Cosmos DB (README: Event processing)"]


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
    """Replace ``%SETTING%`` expressions in a binding value, as the host does."""
    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise DevHostError(f"binding expression %{name}% names an app setting that is not set")
        return os.environ[name]

    return _SETTING.sub(lookup, value)


@dataclass
class Invocation:
    function: str
    id: str
    ok: bool
    duration_ms: float
    error: str | None = None


class DevHost:
    def __init__(self, app_root: Path, *, port: int = 7071, state_dir: Path | None = None,
                 host: str = "127.0.0.1") -> None:
        self.app_root = app_root.resolve()
        self.port = port
        self.bind = host
        self.state_dir = (state_dir or self.app_root / ".emulators").resolve()
        self.runtime = RuntimeHost(self.app_root)
        self.tasks: list[asyncio.Task[None]] = []
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
        say(f"{name} ({record.id[:8]}) {outcome} in {record.duration_ms} ms")
        return record, response

    # ------------------------------------------------------------------ HTTP

    def _http_handler(self, spec: FunctionSpec) -> Callable[[Any], Awaitable[Any]]:
        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            trigger = self.runtime.http_request(
                spec.name, request.method, str(request.url), headers=dict(request.headers),
                query=dict(request.query), body=body, route_params=dict(request.match_info))
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
        elif kind == "blobtrigger":
            container, _, blob_name = text.partition("/")
            if not container or not blob_name:
                return web.json_response({"error": "input must be the blob path 'container/name'"}, status=400)
            data, properties = await self._download(spec, container, blob_name)
            trigger = self.runtime.blob(name, data, container=container, name=blob_name, properties=properties)
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

    def _blob_service(self, spec: FunctionSpec) -> Any:
        from common import clients

        return clients.blob_service_client(str(spec.trigger.raw.get("connection") or "AzureWebJobsStorage"))

    async def _download(self, spec: FunctionSpec, container: str, name: str) -> tuple[bytes, dict[str, Any]]:
        client = self._blob_service(spec).get_blob_client(container, name)
        stream = await client.download_blob()
        data = await stream.readall()
        props = stream.properties
        return data, {"ContentLength": len(data), "ContentType": props.content_settings.content_type,
                      "ETag": props.etag, "LastModified": props.last_modified.isoformat() if props.last_modified else None}

    def _load_receipts(self) -> None:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            self._receipts = json.loads(self._receipts_path.read_text())

    def _save_receipts(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._receipts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._receipts, indent=1, sort_keys=True))
        tmp.replace(self._receipts_path)

    async def _poll_blobs(self, spec: FunctionSpec) -> None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        path = resolve(str(spec.trigger.raw.get("path", "")))
        container = path.split("/", 1)[0]
        failures: dict[str, int] = {}
        warned = False
        say(f"{spec.name}: watching blob container '{container}'")
        while True:
            try:
                container_client = self._blob_service(spec).get_container_client(container)
                async for blob in container_client.list_blobs():
                    key = f"{spec.name}/{container}/{blob.name}"
                    if self._receipts.get(key) == blob.etag:
                        continue
                    data, properties = await self._download(spec, container, blob.name)
                    record, _ = await self.invoke(spec.name, self.runtime.blob(
                        spec.name, data, container=container, name=blob.name, properties=properties,
                        metadata=dict(blob.metadata or {})))
                    if record.ok:
                        failures.pop(key, None)
                        self._receipts[key] = blob.etag
                    else:
                        failures[key] = failures.get(key, 0) + 1
                        if failures[key] >= POISON_BLOB_THRESHOLD:
                            say(f"{spec.name}: {container}/{blob.name} failed {failures[key]} times; "
                                "giving up on this version (the poison-blob threshold)")
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
        for spec in self.runtime.functions.values():
            kind = spec.trigger.type.lower()
            if kind == "httptrigger":
                route = str(spec.trigger.raw.get("route") or spec.name).strip("/")
                methods = [m.upper() for m in spec.trigger.raw.get("methods") or ["GET", "POST", "PUT", "DELETE", "PATCH"]]
                for method in methods:
                    app.router.add_route(method, f"/api/{route}", self._http_handler(spec))
                say(f"{spec.name}: [{','.join(methods)}] http://localhost:{self.port}/api/{route}")
            elif kind == "timertrigger":
                self.tasks.append(asyncio.create_task(self._run_timer(spec), name=spec.name))
            elif kind == "blobtrigger":
                self.tasks.append(asyncio.create_task(self._poll_blobs(spec), name=spec.name))
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
        for note in event_chain_notes(self.runtime.functions, os.environ):
            say(note)
        for task in self.tasks:
            task.add_done_callback(_report_crash)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.bind, self.port)
        await site.start()
        say(f"listening on http://localhost:{self.port} (Ctrl-C stops)")
        try:
            await stop.wait()
        finally:
            say("stopping")
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await runner.cleanup()
            from common import clients

            await clients.close_all()
            await self.runtime.stop()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        say(f"{task.get_name()}: trigger loop stopped: {type(task.exception()).__name__}: {task.exception()}")
