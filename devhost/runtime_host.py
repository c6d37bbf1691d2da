"""Load and invoke a classic (v1) Azure Functions Python app in-process (contract tests, dev host).

The contract tests drive the app through Microsoft's own runtime library for
v1 apps, ``azure-functions-runtime-v1`` (the code Azure's Python proxy worker
calls on Python 3.13+), instead of calling ``main()`` directly. That proves
what the real worker checks: every ``function.json`` loads against its
``__init__.py`` (parameter names, annotations, ``$return``), and the payloads
the Functions host sends for each trigger decode into the objects ``main``
expects.

Typical use (pytest-asyncio)::

    from devhost.runtime_host import RuntimeHost, http_response

    async def test_greeting():
        host = RuntimeHost(APP_ROOT)
        await host.start()                      # raises FunctionLoadError
        resp = await host.invoke(
            "HttpGreeting",
            *host.http_request("HttpGreeting", "GET",
                               "http://localhost/api/greet",
                               query={"name": "Ada"}))
        status, headers, body = http_response(resp)

Facts this relies on:

* The library keeps everything process-global (function registry, the
  ``__app__`` namespace, ``sys.modules``): one app per process. ``start()``
  refuses a function whose ``__app__.<name>`` module was already imported from
  another folder instead of silently running the old code.
* ``function_environment_reload_request`` is never called (it clears
  ``os.environ``).
* The library's request handlers take the generated protobuf classes from
  the caller (``properties["protos"]``); the wheel ships them only as a
  top-level ``tests/protos`` folder. :func:`load_protos` loads them from there
  by path, checked against ``azure-functions-runtime-v1``
  ``EXPECTED_RUNTIME_VERSION`` (1.2.0); see its docstring.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import importlib.metadata
import json
import os
import sys
import types
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "EXPECTED_RUNTIME_VERSION",
    "BindingSpec",
    "FunctionInvocationError",
    "FunctionLoadError",
    "FunctionSpec",
    "RuntimeHost",
    "RuntimeHostError",
    "Trigger",
    "http_response",
    "load_protos",
]

#: The ``azure-functions-runtime-v1`` version these helpers were checked
#: against: its wheel's ``tests/protos`` folder (loaded by path in
#: :func:`load_protos`) is not a documented API, so another version is refused
#: until it has been checked again. requirements-dev.txt pins the same version.
EXPECTED_RUNTIME_VERSION = "1.2.0"

_RUNTIME_DIST = "azure-functions-runtime-v1"
_PROTOS_MODULE = "_runtime_host_rpc_protos"  # private: never "tests.protos"

# The generated protobuf classes are built at run time, so they are typed Any.
TypedData = Any
InvocationResponse = Any
#: What the host sends as ``InvocationRequest.input_data``: (binding name, TypedData).
InputData = list[tuple[str, TypedData]]
#: What the host sends as ``InvocationRequest.trigger_metadata``.
TriggerMetadata = dict[str, TypedData]


class Trigger(NamedTuple):
    """One trigger payload, ready for ``await host.invoke(name, *trigger)``."""

    input_data: InputData
    trigger_metadata: TriggerMetadata


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class RuntimeHostError(RuntimeError):
    """Base class of this development tool's errors (contract tests and the dev host).

    A ``RuntimeError``: it says the tool could not load or run the app, which
    is not a failed test assertion (pytest still reports it, with its message,
    when it escapes a test).
    """


class FunctionLoadError(RuntimeHostError):
    """One or more functions were refused at load.

    ``failures`` maps function name to the message (the runtime's
    ``RpcException.message``, or this module's own check, marked as such).
    """

    def __init__(self, failures: Mapping[str, str]) -> None:
        self.failures = dict(failures)
        lines = [f"{name}: {msg}" for name, msg in self.failures.items()]
        super().__init__("function load failed:\n  " + "\n  ".join(lines))


class FunctionInvocationError(RuntimeHostError):
    """An invocation came back with ``StatusResult.Failure`` (raised by ``invoke(check=True)``).

    Not :class:`common.logs.InvocationFailed`, the app's own masked failure:
    this one carries what the runtime reported, ``message`` and ``stack_trace``.
    """

    def __init__(self, function_name: str, response: InvocationResponse) -> None:
        self.function_name = function_name
        self.response = response
        self.message: str = response.result.exception.message
        self.stack_trace: str = response.result.exception.stack_trace
        text = f"{function_name} failed: {self.message}"
        if self.stack_trace:
            text += "\n--- runtime stack trace ---\n" + self.stack_trace.rstrip()
        super().__init__(text)


# --------------------------------------------------------------------------
# Protos
# --------------------------------------------------------------------------


def _protos_dir() -> Path:
    """The wheel's ``tests/protos`` folder, only for ``EXPECTED_RUNTIME_VERSION``."""
    dist = importlib.metadata.distribution(_RUNTIME_DIST)
    if dist.version != EXPECTED_RUNTIME_VERSION:
        raise RuntimeHostError(
            f"{_RUNTIME_DIST} {dist.version} is installed; runtime_host was "
            f"verified with {EXPECTED_RUNTIME_VERSION} and loads its "
            "undocumented tests/protos folder. Re-verify, then update "
            "EXPECTED_RUNTIME_VERSION.")
    folder = Path(str(dist.locate_file("tests/protos")))
    if not (folder / "FunctionRpc_pb2.py").is_file():
        raise RuntimeHostError(
            f"{_RUNTIME_DIST} {dist.version} has no tests/protos/"
            f"FunctionRpc_pb2.py under {folder.parent.parent}")
    return folder


def load_protos() -> types.ModuleType:
    """Return the runtime's generated protos as one namespace (cached).

    Why: the library's handlers (``worker_init_request``,
    ``function_load_request``, ``invocation_request``) build and read
    protobuf messages with the classes the caller passes in
    ``properties["protos"]``; in Azure the proxy worker passes its own. The
    library exposes no import path for them: ``azure-functions-runtime-v1``
    ships the generated modules only as a top-level ``tests/protos`` folder.

    How: ``tests.protos`` is never imported, because it would clash with this
    project's own ``tests`` package and its ``__init__`` imports the
    ``*_pb2_grpc`` modules, which need grpcio. Instead an empty package named
    ``_runtime_host_rpc_protos`` is registered with ``__path__`` set to that
    folder (so the relative imports of ``identity`` and ``shared`` inside
    ``FunctionRpc_pb2`` work), and ``FunctionRpc_pb2`` and
    ``shared/NullableTypes_pb2`` are imported under it. Every public name of
    both is copied onto the package: ``StreamingMessage``, ``TypedData``,
    ``RpcHttp``, ``NullableString`` and so on.

    Checked against ``azure-functions-runtime-v1`` ``EXPECTED_RUNTIME_VERSION``
    (1.2.0). The folder is not a documented API, so :func:`_protos_dir`
    refuses any other installed version with :class:`RuntimeHostError` until
    it has been checked again and the constant updated.
    """
    cached = sys.modules.get(_PROTOS_MODULE)
    if cached is not None and hasattr(cached, "StreamingMessage"):
        return cached
    pkg = types.ModuleType(_PROTOS_MODULE, "Azure Functions RPC protos (by path)")
    pkg.__path__ = [str(_protos_dir())]
    sys.modules[_PROTOS_MODULE] = pkg
    try:
        for sub in ("FunctionRpc_pb2", "shared.NullableTypes_pb2"):
            mod = importlib.import_module(f"{_PROTOS_MODULE}.{sub}")
            for key, value in vars(mod).items():
                if not key.startswith("_") and key != "DESCRIPTOR":
                    setattr(pkg, key, value)
    except BaseException:
        for key in [k for k in sys.modules
                    if k == _PROTOS_MODULE or k.startswith(_PROTOS_MODULE + ".")]:
            del sys.modules[key]
        raise
    return pkg


# --------------------------------------------------------------------------
# function.json
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BindingSpec:
    """One entry of ``function.json``'s ``bindings``, as the host reads it."""

    name: str
    type: str
    direction: str  # "in" | "out" | "inout"
    data_type: str | None
    raw: Mapping[str, Any]

    @property
    def is_trigger(self) -> bool:
        return self.direction == "in" and self.type.lower().endswith("trigger")


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """A function folder: what ``start()`` sends in ``RpcFunctionMetadata``."""

    name: str
    directory: Path
    script_file: Path
    entry_point: str
    bindings: tuple[BindingSpec, ...]

    @property
    def trigger(self) -> BindingSpec:
        triggers = [b for b in self.bindings if b.is_trigger]
        if len(triggers) != 1:
            raise RuntimeHostError(
                f"{self.name}: function.json has {len(triggers)} trigger "
                "bindings, expected exactly one")
        return triggers[0]

    @classmethod
    def read(cls, directory: Path) -> FunctionSpec:
        """Parse ``directory/function.json`` (``%SETTING%`` is left as is)."""
        raw = json.loads((directory / "function.json").read_text("utf-8-sig"))
        bindings = tuple(
            BindingSpec(name=b["name"], type=b["type"],
                        direction=str(b.get("direction", "in")).lower(),
                        data_type=b.get("dataType"), raw=b)
            for b in raw.get("bindings", []))
        return cls(name=directory.name, directory=directory,
                   script_file=(directory / raw.get("scriptFile", "__init__.py")).resolve(),
                   entry_point=raw.get("entryPoint") or "main",
                   bindings=bindings)


# --------------------------------------------------------------------------
# The host
# --------------------------------------------------------------------------


@dataclasses.dataclass
class _Request:
    """What the library's handlers take: ``.request`` and ``.properties``."""

    request: Any
    properties: dict[str, Any]


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat().replace("+00:00", "Z")


class RuntimeHost:
    """Plays the Functions host for one v1 app, in this process.

    ``app_root`` is the folder with ``host.json`` and one folder per function.
    Only one app per process: the runtime's state is global.
    """

    def __init__(self, app_root: str | os.PathLike[str]) -> None:
        self.app_root = Path(app_root).resolve()
        if not (self.app_root / "host.json").is_file():
            raise RuntimeHostError(f"{self.app_root} has no host.json")
        self.functions: dict[str, FunctionSpec] = {}
        self._ids: dict[str, str] = {}

    # ---- lifecycle -------------------------------------------------------

    def function_dirs(self) -> list[Path]:
        """Sub-folders of the app root that hold a ``function.json``, sorted."""
        return sorted(p.parent for p in self.app_root.glob("*/function.json"))

    async def start(self, only: Iterable[str] | None = None, *,
                    raise_on_failure: bool = True) -> dict[str, str]:
        """Init the worker, then load every function folder (or those in ``only``).

        Returns ``{function name: failure message}`` (empty when all loaded);
        raises :class:`FunctionLoadError` instead when ``raise_on_failure``.
        Calling it again is harmless (already loaded functions are kept).
        """
        import azure_functions_runtime_v1 as runtime

        protos = load_protos()
        root = str(self.app_root)
        if root not in sys.path:  # the proxy worker does this, not the library
            sys.path.insert(0, root)
        if runtime.get_threadpool_executor() is None:
            runtime.start_threadpool_executor()
        init = await runtime.worker_init_request(self._wrap(
            worker_init_request=protos.WorkerInitRequest(
                host_version="4.0.0-runtime-host", function_app_directory=root)))
        if init.result.status != protos.StatusResult.Success:
            raise RuntimeHostError(
                f"worker_init_request failed: {init.result.exception.message}")

        wanted = set(only) if only is not None else None
        failures: dict[str, str] = {}
        for directory in self.function_dirs():
            if wanted is not None and directory.name not in wanted:
                continue
            message = await self._load(directory)
            if message is not None:
                failures[directory.name] = message
        if wanted is not None:
            for name in sorted(wanted - {d.name for d in self.function_dirs()}):
                failures[name] = "runtime_host: no such folder with a function.json"
        if failures and raise_on_failure:
            raise FunctionLoadError(failures)
        return failures

    async def stop(self) -> None:
        """Shut the runtime's thread pool down (sync functions run there)."""
        import azure_functions_runtime_v1 as runtime

        runtime.stop_threadpool_executor()

    async def __aenter__(self) -> RuntimeHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _load(self, directory: Path) -> str | None:
        import azure_functions_runtime_v1 as runtime

        protos = load_protos()
        name = directory.name
        try:
            spec = FunctionSpec.read(directory)
            _ = spec.trigger  # the host refuses a function without exactly one
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"runtime_host: bad function.json: {type(exc).__name__}: {exc}"
        except RuntimeHostError as exc:
            return f"runtime_host: {exc}"

        stale = sys.modules.get(f"__app__.{name}")
        stale_file = getattr(stale, "__file__", None)
        if stale_file and Path(stale_file).resolve().parent != directory:
            return (f"runtime_host: __app__.{name} was already imported from "
                    f"{stale_file}; the runtime would run that code (one app "
                    "per process)")

        directions = {"in": protos.BindingInfo.Direction.Value("in"),
                      "out": protos.BindingInfo.Direction.Value("out"),
                      "inout": protos.BindingInfo.Direction.Value("inout")}
        data_types = {"string": protos.BindingInfo.DataType.Value("string"),
                      "binary": protos.BindingInfo.DataType.Value("binary"),
                      "stream": protos.BindingInfo.DataType.Value("stream")}
        if any(b.direction not in directions for b in spec.bindings):
            return "runtime_host: a binding has an unknown direction"
        function_id = self._ids.get(name) or str(uuid.uuid4())
        metadata = protos.RpcFunctionMetadata(
            name=name, function_id=function_id, directory=str(directory),
            script_file=str(spec.script_file), entry_point=spec.entry_point,
            language="python",
            bindings={b.name: protos.BindingInfo(
                type=b.type, direction=directions[b.direction],
                data_type=data_types.get(str(b.data_type).lower(),
                                         protos.BindingInfo.DataType.Value("undefined")))
                for b in spec.bindings},
            raw_bindings=[json.dumps(dict(b.raw)) for b in spec.bindings])
        resp = await runtime.function_load_request(self._wrap(
            function_load_request=protos.FunctionLoadRequest(
                function_id=function_id, metadata=metadata)))
        if resp.result.status != protos.StatusResult.Success:
            return resp.result.exception.message
        self.functions[name] = spec
        self._ids[name] = function_id
        return None

    # ---- invocation ------------------------------------------------------

    async def invoke(self, function_name: str,
                     input_data: Sequence[tuple[str, TypedData]],
                     trigger_metadata: Mapping[str, TypedData] | None = None,
                     *, check: bool = True) -> InvocationResponse:
        """Send one ``InvocationRequest`` and return the ``InvocationResponse``.

        With ``check`` (the default) a ``Failure`` status raises
        :class:`FunctionInvocationError` carrying the runtime's exception message.
        """
        import azure_functions_runtime_v1 as runtime

        protos = load_protos()
        if function_name not in self._ids:
            raise RuntimeHostError(
                f"{function_name} is not loaded (loaded: {sorted(self._ids)})")
        request = protos.InvocationRequest(
            invocation_id=str(uuid.uuid4()),
            function_id=self._ids[function_name],
            input_data=[protos.ParameterBinding(name=n, data=d) for n, d in input_data],
            trigger_metadata=dict(trigger_metadata or {}))
        resp = await runtime.invocation_request(self._wrap(invocation_request=request))
        if check and resp.result.status != protos.StatusResult.Success:
            raise FunctionInvocationError(function_name, resp)
        return resp

    def succeeded(self, response: InvocationResponse) -> bool:
        """True when the response's status is Success."""
        return response.result.status == load_protos().StatusResult.Success

    # ---- what the host sends, per trigger ----------------------------------

    def trigger_name(self, function_name: str, expected_type: str | None = None) -> str:
        """The trigger binding's ``name`` in the function's ``function.json``.

        With ``expected_type`` (e.g. ``"httpTrigger"``) a different trigger type
        raises, so a helper can't silently feed the wrong payload.
        """
        spec = self.functions.get(function_name)
        if spec is None:
            spec = FunctionSpec.read(self.app_root / function_name)
        trig = spec.trigger
        if expected_type and trig.type.lower() != expected_type.lower():
            raise RuntimeHostError(
                f"{function_name}'s trigger is {trig.type}, not {expected_type}")
        return trig.name

    def _sys(self, function_name: str) -> TypedData:
        return load_protos().TypedData(json=json.dumps({
            "MethodName": function_name, "UtcNow": _now_iso(),
            "RandGuid": str(uuid.uuid4())}))

    def http_request(self, function_name: str, method: str, url: str, *,
                     headers: Mapping[str, str] | None = None,
                     query: Mapping[str, str] | None = None,
                     body: bytes = b"",
                     route_params: Mapping[str, str] | None = None) -> Trigger:
        """HTTP trigger: ``TypedData(http=RpcHttp(...))``, body as bytes.

        ``query`` defaults to the URL's query string (last value wins), as the
        host fills it; ``route_params`` are the ``{...}`` values of the route.
        """
        p = load_protos()
        if query is None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        http = p.RpcHttp(method=method.upper(), url=url,
                         headers=dict(headers or {}), query=dict(query),
                         params=dict(route_params or {}),
                         body=p.TypedData(bytes=bytes(body)))
        name = self.trigger_name(function_name, "httpTrigger")
        return Trigger([(name, p.TypedData(http=http))],
                       {"sys": self._sys(function_name)})

    def timer(self, function_name: str, past_due: bool = False) -> Trigger:
        """Timer trigger: the ``TimerInfo`` JSON the host sends."""
        p = load_protos()
        now = _dt.datetime.now(_dt.UTC)
        info = json.dumps({
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {
                "Last": (now - _dt.timedelta(minutes=5)).isoformat(),
                "Next": (now + _dt.timedelta(minutes=5)).isoformat(),
                "LastUpdated": now.isoformat()},
            "IsPastDue": bool(past_due)})
        name = self.trigger_name(function_name, "timerTrigger")
        return Trigger([(name, p.TypedData(json=info))],
                       {"sys": self._sys(function_name)})

    def blob(self, function_name: str, data: bytes, *, container: str, name: str,
             properties: Mapping[str, Any] | None = None,
             metadata: Mapping[str, str] | None = None,
             account: str = "devstoreaccount1") -> Trigger:
        """Blob trigger (the bench's naive baseline app still has one): bytes, plus ``BlobTrigger``, ``Uri``, ``name``,
        ``Properties`` (ContentLength/ContentType defaults, then yours) and
        ``Metadata``. ``InputStream.name`` is ``"container/name"``."""
        p = load_protos()
        props = {"ContentLength": len(data), "ContentType": "application/octet-stream",
                 "BlobType": "BlockBlob", **dict(properties or {})}
        md = {
            "BlobTrigger": p.TypedData(string=f"{container}/{name}"),
            "Uri": p.TypedData(string=f"https://{account}.blob.core.windows.net/"
                                      f"{container}/{name}"),
            "name": p.TypedData(string=name),
            "Properties": p.TypedData(json=json.dumps(props)),
            "Metadata": p.TypedData(json=json.dumps(dict(metadata or {}))),
            "sys": self._sys(function_name),
        }
        binding = self.trigger_name(function_name, "blobTrigger")
        return Trigger([(binding, p.TypedData(bytes=bytes(data)))], md)

    def event_grid(self, function_name: str, event: Mapping[str, Any]) -> Trigger:
        """Event Grid trigger: one event (Event Grid or CloudEvents schema) as JSON, as the Event
        Grid extension hands it to the worker, with its ``data`` as the only trigger metadata."""
        p = load_protos()
        md = {"data": p.TypedData(json=json.dumps(event.get("data"))), "sys": self._sys(function_name)}
        binding = self.trigger_name(function_name, "eventGridTrigger")
        return Trigger([(binding, p.TypedData(json=json.dumps(dict(event))))], md)

    def queue(self, function_name: str, body: bytes, *, message_id: str | None = None,
              dequeue_count: int = 1, pop_receipt: str | None = None,
              inserted: _dt.datetime | None = None) -> Trigger:
        """Storage queue trigger: the decoded message body, plus ``Id``, ``DequeueCount`` (JSON
        int), ``InsertionTime``/``ExpirationTime``/``NextVisibleTime`` (JSON strings) and
        ``PopReceipt``, the types the queue extension's values reach the worker as."""
        p = load_protos()
        inserted = inserted or _dt.datetime.now(_dt.UTC)
        md = {
            "Id": p.TypedData(string=message_id or str(uuid.uuid4())),
            "DequeueCount": p.TypedData(json=json.dumps(int(dequeue_count))),
            "InsertionTime": p.TypedData(json=json.dumps(inserted.isoformat())),
            "ExpirationTime": p.TypedData(json=json.dumps((inserted + _dt.timedelta(days=7)).isoformat())),
            "NextVisibleTime": p.TypedData(json=json.dumps(_now_iso())),
            "PopReceipt": p.TypedData(string=pop_receipt or uuid.uuid4().hex),
            "sys": self._sys(function_name),
        }
        binding = self.trigger_name(function_name, "queueTrigger")
        return Trigger([(binding, p.TypedData(bytes=bytes(body)))], md)

    def service_bus(self, function_name: str, body: bytes | str, *,
                    message_id: str | None = None, delivery_count: int = 1,
                    correlation_id: str | None = None,
                    content_type: str | None = None,
                    user_properties: Mapping[str, Any] | None = None,
                    sequence_number: int = 1,
                    enqueued_time_utc: str | None = None) -> Trigger:
        """Service Bus trigger (cardinality one): body as bytes (or string),
        trigger metadata ``MessageId``, ``DeliveryCount`` (JSON int),
        ``ContentType``, ``CorrelationId``, ``EnqueuedTimeUtc``,
        ``SequenceNumber``, ``LockToken`` and ``UserProperties`` plus
        ``ApplicationProperties`` (same object; ``UserProperties`` is what the
        decoder requires). ``None`` values are left out, as the host does."""
        p = load_protos()
        props = json.dumps(dict(user_properties or {}))
        md = {
            "MessageId": p.TypedData(string=message_id or uuid.uuid4().hex),
            "DeliveryCount": p.TypedData(json=json.dumps(int(delivery_count))),
            "SequenceNumber": p.TypedData(json=json.dumps(int(sequence_number))),
            "EnqueuedTimeUtc": p.TypedData(string=enqueued_time_utc or _now_iso()),
            "LockToken": p.TypedData(string=str(uuid.uuid4())),
            "UserProperties": p.TypedData(json=props),
            "ApplicationProperties": p.TypedData(json=props),
            "sys": self._sys(function_name),
        }
        if content_type is not None:
            md["ContentType"] = p.TypedData(string=content_type)
        if correlation_id is not None:
            md["CorrelationId"] = p.TypedData(string=correlation_id)
        data = (p.TypedData(string=body) if isinstance(body, str)
                else p.TypedData(bytes=bytes(body)))
        binding = self.trigger_name(function_name, "serviceBusTrigger")
        return Trigger([(binding, data)], md)

    # ---- plumbing ----------------------------------------------------------

    def _wrap(self, **message: Any) -> _Request:
        protos = load_protos()
        return _Request(
            request=protos.StreamingMessage(request_id=str(uuid.uuid4()), **message),
            properties={"protos": protos, "host": "runtime_host"})


def http_response(response: InvocationResponse,
                  binding: str = "$return") -> tuple[int, dict[str, str], bytes]:
    """Decode an HTTP output into ``(status, headers, body)``.

    ``binding="$return"`` reads ``response.return_value``; another name reads
    that ``output_data`` entry. A plain string output counts as 200 with that
    body. Cookies (``RpcHttp.cookies``) are not folded into ``headers``.
    """
    if binding == "$return":
        data = response.return_value
    else:
        found = [pb.data for pb in response.output_data if pb.name == binding]
        if not found:
            raise RuntimeHostError(f"no output binding named {binding!r}")
        data = found[0]
    kind = data.WhichOneof("data")
    if kind == "string":
        return 200, {}, data.string.encode("utf-8")
    if kind != "http":
        raise RuntimeHostError(f"{binding} is not an HTTP response (TypedData {kind})")
    http = data.http
    body_kind = http.body.WhichOneof("data")
    if body_kind == "bytes":
        body = http.body.bytes
    elif body_kind == "string":
        body = http.body.string.encode("utf-8")
    elif body_kind is None:
        body = b""
    else:
        raise RuntimeHostError(f"unexpected HTTP body TypedData {body_kind}")
    return int(http.status_code or 200), dict(http.headers), body


def blob_created_event(container: str, name: str, *, etag: str, content_length: int,
                       account: str = "devstoreaccount1", api: str = "PutBlob") -> dict[str, Any]:
    """A ``Microsoft.Storage.BlobCreated`` event in the Event Grid schema, as a storage account's
    system topic sends it (the ``eTag`` without quotes)."""
    return {
        "id": str(uuid.uuid4()),
        "topic": f"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
                 f"Microsoft.Storage/storageAccounts/{account}",
        "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": _now_iso(),
        "dataVersion": "",
        "metadataVersion": "1",
        "data": {"api": api, "eTag": etag.strip('"'), "contentType": "application/octet-stream",
                 "contentLength": content_length, "blobType": "BlockBlob",
                 "url": f"https://{account}.blob.core.windows.net/{container}/{name}",
                 "sequencer": f"{uuid.uuid4().int:032x}", "storageDiagnostics": {"batchId": str(uuid.uuid4())}},
    }
