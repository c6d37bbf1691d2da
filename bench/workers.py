"""One measurement per process: ``python -m bench.workers <measurement> [options]``.

Each prints one JSON object on its last line of stdout. ``bench.run`` starts these
in fresh processes so that imports, caches and memory of one measurement never
leak into another.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import statistics
import sys
import time
import tracemalloc
import types
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BASELINE_APP = PROJECT_ROOT / "bench" / "baselines" / "naive_app"
API_KEY = "bench-api-key-0123456789"

OURS = {"http": "HttpGreeting", "etl": "BlobEtl", "cleanup": "CleanupTimer"}
BASELINE = {"http": "GreetingFetchesSecretPerRequest", "etl": "EtlLoadAllThenCreateOneByOne",
            "cleanup": "CleanupSelectAllDeleteOneByOne"}


# ---------------------------------------------------------------- credentials

def _token() -> Any:
    from azure.core.credentials import AccessToken

    return AccessToken("bench-static-token", int(time.time()) + 3600)


class StaticCredential:
    """A credential that always has a token: no identity endpoint exists on this machine."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return _token()

    def close(self) -> None:
        pass


class AsyncStaticCredential:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return _token()

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> AsyncStaticCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        pass


def install_static_credentials() -> None:
    """Both apps get the static credential where they would build DefaultAzureCredential."""
    import azure.identity
    import azure.identity.aio

    import common.credential

    azure.identity.DefaultAzureCredential = StaticCredential  # type: ignore[misc,assignment]
    azure.identity.aio.DefaultAzureCredential = AsyncStaticCredential  # type: ignore[misc,assignment]
    common.credential._build_credential = lambda: AsyncStaticCredential()


def accept_local_vault_stub() -> None:
    """The baseline's sync SecretClient, with the two flags the local stub needs (its self-signed
    certificate, and a challenge resource that is not a vault domain). Ours sets them itself for
    loopback vaults (common.clients)."""
    import azure.keyvault.secrets as kv

    original = kv.SecretClient

    class StubSecretClient(original):  # type: ignore[misc,valid-type]
        def __init__(self, vault_url: str, credential: Any, **kwargs: Any) -> None:
            super().__init__(vault_url, credential, connection_verify=False, verify_challenge_resource=False, **kwargs)

    kv.SecretClient = StubSecretClient  # type: ignore[misc]


def accept_local_vault_stub_on_import() -> None:
    """:func:`accept_local_vault_stub`, applied when the baseline first imports the SDK, so the
    import still happens (and is timed) where the baseline does it."""
    import importlib.abc

    class PatchOnImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name != "azure.keyvault.secrets":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            assert spec is not None and spec.loader is not None
            load = spec.loader.exec_module

            def exec_module(module: types.ModuleType) -> None:
                load(module)
                sys.modules[name] = module
                accept_local_vault_stub()

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, PatchOnImport())


def _load_baseline_function(folder: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"baseline_{folder}", BASELINE_APP / folder / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def server_stats() -> dict[str, float] | None:
    """The Cosmos server's counters (CPU seconds, requests, RU charged, throttled), when
    ``BENCH_COSMOS_PORT`` names it (scripts/cosmos-server.js, ``GET /_bench/stats``)."""
    port = os.environ.get("BENCH_COSMOS_PORT")
    if not port:
        return None
    import ssl
    import urllib.request

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/_bench/stats", context=context, timeout=10) as response:
        return dict(json.loads(response.read()))


def stats_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
    if before is None or after is None:
        return {}
    delta = {f"server_{key}": after[key] - before[key] for key in ("cpuSeconds", "requests", "charged", "throttled")}
    delta["server_tokens_at_start"] = before.get("tokens", 0.0)
    return delta


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _RssSampler:
    """The highest resident set size seen while the block runs, sampled every 2 ms by a thread."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(0.002)

    def __enter__(self) -> _RssSampler:
        self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


class Context:
    def __init__(self, name: str) -> None:
        self.function_name = name
        self.invocation_id = str(uuid.uuid4())
        self.trace_context = None


# ----------------------------------------------------------------- cold start

def coldstart(app: str) -> dict[str, Any]:
    """Time the runtime's own start (worker init, ``azure.functions``, the protos), then, in the same
    process, the loading of every function of the app: that second part is what the app costs."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from devhost.runtime_host import RuntimeHost

    root = PROJECT_ROOT if app == "ours" else BASELINE_APP
    started = time.perf_counter()
    import azure.functions  # noqa: F401 - the runtime imports it for every app

    host = RuntimeHost(root)
    asyncio.run(host.start(only=[]))
    floor = time.perf_counter() - started
    before = len(sys.modules)
    started = time.perf_counter()
    asyncio.run(host.start())
    load = time.perf_counter() - started
    return {"floor_seconds": floor, "load_seconds": load, "modules": len(sys.modules) - before,
            "floor_modules": before, "functions": len(host.functions)}


# ------------------------------------------------- cold start to the first response

FIRST = {"http": ("HttpGreeting", "GreetingFetchesSecretPerRequest"),
         "etl": ("BlobEtl", "EtlLoadAllThenCreateOneByOne"),
         "cleanup": ("CleanupTimer", "CleanupSelectAllDeleteOneByOne"),
         # Ours only (the naive app has no tokens): a bearer token validated against the local
         # issuer's JWKS (BENCH_TOKEN, AUTH_* from the environment), PyJWT and the keys' fetch
         # included; PublishEvent's body is refused after the token passed (no topic here).
         "http-token": ("HttpGreeting", ""),
         "events-token": ("PublishEvent", ""),
         # The key from an app setting, as an App Service Key Vault reference resolves it: no SDK.
         "http-setting": ("HttpGreeting", "")}
#: The status each first response must have.
FIRST_STATUS = {"http": 200, "http-token": 200, "http-setting": 200, "events-token": 400}


def first_response(app: str, kind: str) -> dict[str, Any]:
    """A new instance's first answer: the runtime loads every function of the app, then one
    function serves its first invocation (clients built, connections opened, modules imported).
    Nothing is imported or patched beforehand: both apps sign in with the managed identity
    credential against the stub's identity endpoint (IDENTITY_ENDPOINT), as in Azure."""
    sys.path.insert(0, str(PROJECT_ROOT))
    import azure.functions  # noqa: F401 - the runtime imports it for every app

    from devhost.runtime_host import RuntimeHost, http_response

    root = PROJECT_ROOT if app == "ours" else BASELINE_APP
    name = FIRST[kind][0 if app == "ours" else 1]
    if app == "baseline":
        accept_local_vault_stub_on_import()
    host = RuntimeHost(root)
    asyncio.run(host.start(only=[]))  # the runtime's own start, the same for both apps: not counted
    blob = make_blob(WARMUP_RECORDS, prefix=f"first-{app}")
    event: dict[str, Any] = {}
    if kind == "etl" and app == "ours":
        # Ours is triggered by a BlobCreated event and reads the blob itself: upload it first (not counted).
        event = _upload_for_event(blob, f"first-{app}.json")

    async def run() -> tuple[float, float]:
        started = time.perf_counter()
        await host.start()
        loaded = time.perf_counter()
        if kind in ("http", "http-setting"):
            trigger = host.http_request(name, "GET", f"http://localhost:7071/api/{name}?name=Ada",
                                        headers={"x-api-key": API_KEY})
        elif kind == "http-token":
            trigger = host.http_request(name, "GET", f"http://localhost:7071/api/{name}?name=Ada",
                                        headers={"Authorization": f"Bearer {os.environ['BENCH_TOKEN']}"})
        elif kind == "events-token":
            trigger = host.http_request(name, "POST", "http://localhost:7071/api/events", body=b"[]",
                                        headers={"Authorization": f"Bearer {os.environ['BENCH_TOKEN']}",
                                                 "content-type": "application/json"})
        elif kind == "etl" and app == "ours":
            trigger = host.event_grid(name, event)
        elif kind == "etl":
            trigger = host.blob(name, blob, container="incoming", name=f"first-{app}.json",
                                properties={"ContentType": "application/json"})
        else:
            trigger = host.timer(name)
        response = await host.invoke(name, *trigger)
        answered = time.perf_counter()
        if kind in FIRST_STATUS and http_response(response)[0] != FIRST_STATUS[kind]:
            raise RuntimeError(f"{name} answered {http_response(response)[0]}")
        if not host.succeeded(response):
            raise RuntimeError(f"{name} failed: {response.result.exception.message}")
        return loaded - started, answered - loaded

    load, first = asyncio.run(run())
    return {"load_seconds": load, "first_seconds": first, "total_seconds": load + first, "function": name}


def _upload_for_event(data: bytes, name: str) -> dict[str, Any]:
    """Upload ``data`` to the input container with the sync SDK (modules the app never imports, so
    the cold start it precedes is not warmed), and return the BlobCreated event for it."""
    import subprocess

    from devhost.runtime_host import blob_created_event

    code = ("import os, sys; from azure.storage.blob import BlobClient; "
            "c = BlobClient.from_connection_string(os.environ['EtlStorage'], 'incoming', sys.argv[1]); "
            "print(c.upload_blob(sys.stdin.buffer.read(), overwrite=True)['etag'])")
    etag = subprocess.run([sys.executable, "-c", code, name], input=data, capture_output=True, check=True).stdout
    return blob_created_event("incoming", name, etag=etag.decode().strip(), content_length=len(data))


# ------------------------------------------------------------------- warm HTTP

def http(app: str, vault_url: str, invocations: int, warmup: int, telemetry_on: bool,
         auth: str = "key") -> dict[str, Any]:
    """Warm requests to one loaded function: with the API key (from the vault stub) or a bearer
    token (BENCH_TOKEN, validated against the local issuer's keys)."""
    os.environ.update(KEY_VAULT_URL=vault_url, API_KEY_SECRET_NAME="greeting-api-key")
    credentials = ({"Authorization": f"Bearer {os.environ['BENCH_TOKEN']}"} if auth == "token"
                   else {"x-api-key": API_KEY})
    fresh: list[str] = []
    if auth == "token-each":
        # A new token on every request (minted before the clock starts): the cost of validating one,
        # RS256 verification included, where "token" reuses one token as a client does.
        from devhost.issuer import LocalIssuer

        issuer = LocalIssuer.from_key_file(Path(os.environ["BENCH_ISSUER_KEY"]), os.environ["BENCH_ISSUER_BASE"])
        fresh = [issuer.mint(roles=["Events.Publish"]) for _ in range(invocations + warmup)]
    sys.path.insert(0, str(PROJECT_ROOT))
    from devhost.runtime_host import RuntimeHost, http_response

    install_static_credentials()
    if app == "baseline":
        accept_local_vault_stub()
    if telemetry_on:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        from common import telemetry

        class DiscardSpans(SpanExporter):
            """Spans are recorded and batched as in production, then dropped instead of sent."""

            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(DiscardSpans()))
        telemetry.use_providers(provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
    root, name = (PROJECT_ROOT, OURS["http"]) if app == "ours" else (BASELINE_APP, BASELINE["http"])

    async def run() -> dict[str, Any]:
        host = RuntimeHost(root)
        await host.start(only=[name])
        url = f"http://localhost:7071/api/{name}?name=Ada"

        async def one() -> float:
            headers = {"Authorization": f"Bearer {fresh.pop()}"} if fresh else credentials
            trigger = host.http_request(name, "GET", url, headers=headers)
            started = time.perf_counter()
            response = await host.invoke(name, *trigger)
            elapsed = time.perf_counter() - started
            status = http_response(response)[0]
            if status != 200:
                raise RuntimeError(f"{name} answered {status}")
            return elapsed

        for _ in range(warmup):
            await one()
        started = time.perf_counter()
        latencies = [await one() for _ in range(invocations)]
        total = time.perf_counter() - started
        latencies.sort()
        return {"invocations": invocations, "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
                "rps": invocations / total}

    return asyncio.run(run())


# -------------------------------------------------------------------- Blob ETL

#: The warm-up blob: more records than writes in flight (ETL_WRITE_CONCURRENCY, 32), so the warm-up
#: opens every connection the measured run will use and the run's figures hold none of their costs.
WARMUP_RECORDS = 64


def make_blob(records: int, prefix: str = "rec") -> bytes:
    filler = "sensor reading " * 14
    return json.dumps([{"id": f"{prefix}-{i:07d}", "data": f"{filler}{i}", "source": f"sensor-{i % 50}",
                        "type": "reading"} for i in range(records)]).encode()


class BlobStream:
    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.length = len(data)
        self._data = data

    def read(self, size: int = -1) -> bytes:
        return self._data


async def _count_items() -> int:
    from azure.cosmos.aio import CosmosClient

    client = CosmosClient.from_connection_string(os.environ["CosmosConnection"], connection_verify=False)
    try:
        container = client.get_database_client(os.environ["COSMOS_DATABASE"]).get_container_client(
            os.environ["COSMOS_CONTAINER"])
        counts: list[Any] = [n async for n in container.query_items("SELECT VALUE COUNT(1) FROM c")]
        return int(counts[0])
    finally:
        await client.close()


class ReferenceWriter:
    """The same SDK writing the same items (shaped as BlobEtl shapes them) and the same count, with
    the same writes in flight and a transport without per-request environment lookups: the
    floor of what any code on this SDK costs per record. Items are prepared before the clock starts."""

    def __init__(self, blobs: list[BlobStream], concurrency: int) -> None:
        from etl import to_item

        self.items = {blob.name: [to_item(record, blob.name, "2026-01-01T00:00:00.000Z")
                                  for record in json.loads(blob.read())] for blob in blobs}
        self.concurrency = concurrency
        self.client: Any = None
        self.container: Any = None

    async def write(self, blob: BlobStream) -> None:
        from azure.core.pipeline.transport import AioHttpTransport
        from azure.cosmos.aio import CosmosClient

        if self.container is None:
            self.client = CosmosClient.from_connection_string(
                os.environ["CosmosConnection"], connection_verify=False, enable_endpoint_discovery=False,
                transport=AioHttpTransport(use_env_settings=False, connection_verify=False))
            self.container = self.client.get_database_client(os.environ["COSMOS_DATABASE"]).get_container_client(
                os.environ["COSMOS_CONTAINER"])
            await self.container.read()
        semaphore = asyncio.Semaphore(self.concurrency)

        async def put(item: dict[str, Any]) -> None:
            async with semaphore:
                await self.container.upsert_item(item)

        await asyncio.gather(*(put(item) for item in self.items[blob.name]))

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


def etl(impl: str, records: int, trace_memory: bool) -> dict[str, Any]:
    """One ETL run of ``records`` records after a warm-up run: wall time, the client's CPU
    (this process), the server's CPU, requests and RU (from its stats), memory."""
    sys.path.insert(0, str(PROJECT_ROOT))
    install_static_credentials()
    prefix = os.environ.get("BENCH_PREFIX", "rec")
    data = make_blob(records, prefix=prefix)
    stream = BlobStream(f"incoming/bench-{prefix}-{records}.json", data)
    warmup = BlobStream(f"incoming/bench-{prefix}-warmup.json", make_blob(WARMUP_RECORDS, prefix=f"warm-{prefix}"))
    main: Callable[..., Awaitable[None]]
    concurrency = int(os.environ.get("ETL_WRITE_CONCURRENCY", "32"))
    if impl == "ours":
        # BlobEtl's inline path on the bytes, as the baseline's blob binding hands them over: the
        # ETL's cost, not the storage read that the Event Grid-triggered entry point adds.
        from common import clients, settings
        from common.logs import bind_invocation
        from etl import process_blob

        async def ours(blob: BlobStream, context: Context) -> None:
            await process_blob(blob.read(), source_blob=blob.name, cfg=settings.etl_settings(),
                               log=bind_invocation(context), container=clients.cosmos_container(),
                               blob_service=clients.blob_service_client("EtlStorage"),
                               throttle=clients.cosmos_throttle_signal())

        main = ours
        # Import now what the first invocation would import (the baseline imports its SDKs at
        # module top): tracemalloc should see the data, not the modules.
        import azure.cosmos.aio  # noqa: F401
        import azure.storage.blob.aio  # noqa: F401
        import opentelemetry.metrics  # noqa: F401
        import opentelemetry.trace  # noqa: F401

        import common.clients  # noqa: F401
        import etl  # noqa: F401
    elif impl == "reference":
        reference = ReferenceWriter([warmup, stream], concurrency)
    else:
        main = _load_baseline_function(BASELINE["etl"]).main

    async def invoke(blob: BlobStream) -> None:
        if impl == "ours":
            await main(blob, Context("BlobEtl"))
        elif impl == "reference":
            await reference.write(blob)
        else:
            await main(blob)

    async def run() -> dict[str, Any]:
        # A warm instance: the first invocation (clients, every connection the run uses, container
        # properties) is not what a big blob costs. The baseline builds its clients per invocation.
        await invoke(warmup)
        rss_before = _rss_bytes()
        if trace_memory:
            tracemalloc.start()
        server_before = server_stats()
        cpu_started = time.process_time()
        started = time.perf_counter()
        await invoke(stream)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        server_after = server_stats()
        traced_peak = tracemalloc.get_traced_memory()[1] if trace_memory else None
        if trace_memory:
            tracemalloc.stop()
        rss_delta = _peak_rss_bytes() - rss_before
        if impl == "ours":
            from common import clients

            await clients.close_all()
        elif impl == "reference":
            await reference.close()
        return {"seconds": elapsed, "client_cpu_seconds": cpu, "traced_peak": traced_peak, "rss_delta": rss_delta,
                **stats_delta(server_before, server_after)}

    measured = asyncio.run(run())
    written = asyncio.run(_count_items()) - WARMUP_RECORDS
    if written != records:
        raise RuntimeError(f"{impl} wrote {written} of {records} records")
    elapsed = measured["seconds"]
    return {"records": records, "seconds": elapsed, "records_per_second": records / elapsed,
            "client_cpu_ms_per_record": measured["client_cpu_seconds"] * 1000 / records,
            "blob_bytes": len(data), "rss_delta_bytes": measured["rss_delta"],
            "tracemalloc_peak_bytes": measured["traced_peak"],
            **{k: v for k, v in measured.items() if k.startswith("server_")}}


def raw_upsert(records: int, concurrency: int) -> dict[str, Any]:
    """The emulator's limit: a minimal async client upserting prepared items, nothing else."""
    from azure.cosmos.aio import CosmosClient

    items = [{"id": f"raw-{i:07d}", "processedData": "X" * 220, "timestamp": "2026-01-01T00:00:00.000Z",
              "metadata": {"source": f"sensor-{i % 50}", "type": "reading"}} for i in range(records)]

    async def run() -> float:
        client = CosmosClient.from_connection_string(os.environ["CosmosConnection"], connection_verify=False)
        container = client.get_database_client(os.environ["COSMOS_DATABASE"]).get_container_client(
            os.environ["COSMOS_CONTAINER"])
        await container.read()
        semaphore = asyncio.Semaphore(concurrency)

        async def put(item: dict[str, Any]) -> None:
            async with semaphore:
                await container.upsert_item(item)

        started = time.perf_counter()
        await asyncio.gather(*(put(item) for item in items))
        elapsed = time.perf_counter() - started
        await client.close()
        return elapsed

    elapsed = asyncio.run(run())
    return {"records": records, "seconds": elapsed, "records_per_second": records / elapsed}


# --------------------------------------------------------------------- cleanup

async def _seed_expired(items: int, fresh: int) -> None:
    from azure.cosmos.aio import CosmosClient

    client = CosmosClient.from_connection_string(os.environ["CosmosConnection"], connection_verify=False)
    container = client.get_database_client(os.environ["COSMOS_DATABASE"]).get_container_client(
        os.environ["COSMOS_CONTAINER"])
    semaphore = asyncio.Semaphore(32)

    async def put(item: dict[str, Any]) -> None:
        from azure.cosmos.exceptions import CosmosHttpResponseError

        async with semaphore:
            while True:  # under a request-unit budget, a write can lose the race for the bucket many times
                try:
                    await container.upsert_item(item)
                    return
                except CosmosHttpResponseError as exc:
                    if exc.status_code != 429:
                        raise
                    await asyncio.sleep(0.05)

    expired = [{"id": f"old-{i}", "timestamp": "2001-01-01T00:00:00.000Z", "metadata": {"source": "s", "type": "t"},
                "processedData": "X" * 200} for i in range(items)]
    kept = [{"id": f"new-{i}", "timestamp": "2999-01-01T00:00:00.000Z", "metadata": {"source": "s", "type": "t"},
             "processedData": "X" * 200} for i in range(fresh)]
    await asyncio.gather(*(put(item) for item in expired + kept))
    await client.close()


def cleanup(impl: str, items: int, concurrency: int) -> dict[str, Any]:
    sys.path.insert(0, str(PROJECT_ROOT))
    install_static_credentials()
    asyncio.run(_seed_expired(items, fresh=items // 10))
    from azure.functions.timer import TimerRequest

    async def run() -> float:
        started = time.perf_counter()
        if impl == "ours":
            # What CleanupTimer's adapter runs: the retention package with the app's clients and settings.
            from common import clients, settings
            from common.logs import bind_invocation
            from retention import run_cleanup

            await run_cleanup(cfg=settings.cleanup_settings(), log=bind_invocation(cast(Any, Context("CleanupTimer"))),
                              container=clients.cosmos_container(), throttle=clients.cosmos_throttle_signal(),
                              function_timeout=settings.function_timeout_seconds())
            elapsed = time.perf_counter() - started
            await clients.close_all()
            return elapsed
        if impl == "baseline":
            await _load_baseline_function(BASELINE["cleanup"]).main(TimerRequest(past_due=False))
            return time.perf_counter() - started
        return await _raw_delete(items, concurrency)

    if impl == "ours":  # modules the first run would import are not what a delete costs
        import azure.cosmos.aio  # noqa: F401

        import common.clients  # noqa: F401
        import retention.cleanup  # noqa: F401
    server_before = server_stats()
    cpu_started = time.process_time()
    elapsed = asyncio.run(run())
    cpu = time.process_time() - cpu_started
    server_after = server_stats()
    remaining = asyncio.run(_count_items())
    if remaining != items // 10:
        raise RuntimeError(f"{impl} left {remaining} items, expected {items // 10}")
    return {"items": items, "seconds": elapsed, "deletes_per_second": items / elapsed,
            "client_cpu_ms_per_delete": cpu * 1000 / items, **stats_delta(server_before, server_after)}


async def _raw_delete(items: int, concurrency: int) -> float:
    """The reference: the same SDK deleting known (id, partition key) pairs at the same concurrency,
    no query, on a transport without per-request environment lookups (as ours)."""
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.cosmos.aio import CosmosClient

    client = CosmosClient.from_connection_string(os.environ["CosmosConnection"], connection_verify=False,
                                                 enable_endpoint_discovery=False,
                                                 transport=AioHttpTransport(use_env_settings=False,
                                                                            connection_verify=False))
    container = client.get_database_client(os.environ["COSMOS_DATABASE"]).get_container_client(
        os.environ["COSMOS_CONTAINER"])
    await container.read()
    semaphore = asyncio.Semaphore(concurrency)

    async def drop(item_id: str) -> None:
        async with semaphore:
            await container.delete_item(item_id, partition_key=item_id)

    started = time.perf_counter()
    await asyncio.gather(*(drop(f"old-{i}") for i in range(items)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


# ------------------------------------------------------------ the pipeline's memory

def pipeline_step(step: str, blob: str, etag: str, size: int) -> dict[str, Any]:
    """Peak RSS growth of one step of a fanned-out blob, in this fresh process: ``split`` splits the
    blob (reads every byte, sends every segment message); ``segment`` takes the first segment
    message from the work queue and writes its records. Growth is the process's peak RSS after the
    step less its peak before it (imports, clients and one storage round trip done)."""
    from common import clients, settings
    from common.logs import bind_invocation
    from etl import BlobVersion, SplitWork, encode_work, handle_work

    async def run() -> dict[str, Any]:
        cfg = settings.etl_settings()
        blobs = clients.blob_service_client("EtlStorage")
        queue = clients.storage_queue(cfg.work_queue)
        await blobs.get_blob_client("incoming", blob).get_blob_properties()
        await queue.get_queue_properties()
        container = clients.cosmos_container()
        await container.read()
        if step == "split":
            body = encode_work(SplitWork(BlobVersion("incoming", blob, etag, size), "2026-11-27T00:00:00.000Z"))
            message_id = f"bench-split-{uuid.uuid4()}"
        else:
            [message] = [m async for m in queue.receive_messages(max_messages=1, visibility_timeout=600)]
            body, message_id = bytes(message.content), message.id
        peak_before = _peak_rss_bytes()
        rss_before = _rss_bytes()
        sampler = _RssSampler()
        started = time.perf_counter()
        with sampler:
            work = await handle_work(body, message_id=message_id, dequeue_count=1, max_dequeue_count=5, cfg=cfg,
                                     log=bind_invocation(Context("BlobEtlWorker")), blob_service=blobs,
                                     queue=lambda: queue, container=clients.cosmos_container,
                                     throttle=clients.cosmos_throttle_signal())
        elapsed = time.perf_counter() - started
        result: dict[str, Any] = {"seconds": elapsed, "rss_before_bytes": rss_before, "size": size,
                                  # The step's own peak above where it started (RSS sampled every 2 ms) ...
                                  "peak_growth_bytes": max(0, sampler.peak - rss_before),
                                  # ... and the process's peak RSS growth (0 when the step stayed under the
                                  # peak that imports and client set-up had already reached).
                                  "process_peak_growth_bytes": _peak_rss_bytes() - peak_before}
        if step == "split":
            props = await queue.get_queue_properties()
            result["segments_queued"] = props.approximate_message_count
        else:
            assert work.kind == "segment", work
            result["records"] = work.segment.records
        await clients.close_all()
        return result

    return asyncio.run(run())


# ---------------------------------------------------------------------- orders

def _percentiles(latencies: list[float], total: float) -> dict[str, float]:
    latencies = sorted(latencies)
    return {"p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "per_second": len(latencies) / total}


def orders_api(impl: str, operations: int, stream_events: int) -> dict[str, Any]:
    """Warm creates, reads and patches through the runtime on the local Cosmos server, one at a
    time: ours (bearer token, the event store, conditional writes) or the naive CRUD baseline
    (an upsert per write, a client per request, no condition). For ours also: a read of a stream
    of ``stream_events`` events against one of 10, and the whole fold without its snapshot."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from devhost.issuer import LocalIssuer
    from devhost.runtime_host import RuntimeHost, http_response

    ours = impl == "ours"
    root = PROJECT_ROOT if ours else BASELINE_APP
    names = ("Orders", "Order") if ours else ("OrdersCrudUpsert", "OrdersCrudUpsert")
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if ours:
        issuer = LocalIssuer.from_key_file(Path(os.environ["BENCH_ISSUER_KEY"]), os.environ["BENCH_ISSUER_BASE"])
        headers["Authorization"] = f"Bearer {issuer.mint(roles=['Orders.Write'], lifetime=6 * 3600)}"
    order = {"customerId": "c-1", "currency": "EUR",
             "lines": [{"sku": f"SKU-{i}", "quantity": i + 1, "unitPrice": "9.99"} for i in range(3)]}
    body = json.dumps(order).encode()

    async def run() -> dict[str, Any]:
        host = RuntimeHost(root)
        await host.start(only=sorted(set(names)))
        base = "http://localhost:7071/api/orders"

        async def call(name: str, method: str, url: str, data: bytes = b"", extra: dict[str, str] | None = None,
                       route: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes, float]:
            trigger = host.http_request(name, method, url, headers={**headers, **(extra or {})}, body=data,
                                        route_params=route or {})
            started = time.perf_counter()
            response = await host.invoke(name, *trigger)
            elapsed = time.perf_counter() - started
            status, reply_headers, payload = http_response(response)
            return status, {k.lower(): v for k, v in reply_headers.items()}, payload, elapsed

        async def create() -> tuple[str, float]:
            status, _, payload, elapsed = await call(names[0], "POST", base, body)
            if status != 201:
                raise RuntimeError(f"create answered {status}: {payload[:300]!r}")
            return str(json.loads(payload)["id"]), elapsed

        async def read(order_id: str) -> float:
            status, _, payload, elapsed = await call(names[1], "GET", f"{base}/{order_id}", route={"id": order_id})
            if status != 200:
                raise RuntimeError(f"read answered {status}: {payload[:300]!r}")
            return elapsed

        version = [1]

        async def patch(order_id: str, index: int) -> float:
            extra = {"Content-Type": "application/merge-patch+json"}
            if ours:
                extra["If-Match"] = f'"{version[0]}"'
            data = json.dumps({"customerId": f"c-{index}"}).encode()
            status, _, payload, elapsed = await call(names[1], "PATCH", f"{base}/{order_id}", data, extra,
                                                     {"id": order_id})
            if status != 200:
                raise RuntimeError(f"patch answered {status}: {payload[:300]!r}")
            version[0] += 1
            return elapsed

        for _ in range(20):  # warm-up: connections, token validation, the first snapshot
            await create()
        figures: dict[str, Any] = {}
        started = time.perf_counter()
        created = [await create() for _ in range(operations)]
        figures["create"] = _percentiles([elapsed for _, elapsed in created], time.perf_counter() - started)
        target = created[0][0]
        started = time.perf_counter()
        figures["read"] = _percentiles([await read(target) for _ in range(operations)], time.perf_counter() - started)
        started = time.perf_counter()
        figures["patch"] = _percentiles([await patch(target, i) for i in range(operations)], time.perf_counter() - started)
        if ours:
            short, _ = await create()
            version[0] = 1
            for i in range(9):
                await patch(short, i)
            long, _ = await create()
            version[0] = 1
            for i in range(stream_events - 1):
                await patch(long, i)
            reads = 200
            figures["read_10"] = _percentiles([await read(short) for _ in range(reads)], 1)
            figures["read_long"] = _percentiles([await read(long) for _ in range(reads)], 1)
            from common import clients, settings
            from eventstore import EventStore
            from orders.aggregate import ORDER_PROJECTION, UPCASTERS

            container = clients.cosmos_container(container=settings.orders_settings().events_container)
            whole = EventStore(container, upcasters=UPCASTERS, snapshot_every=0)
            folds = []
            for _ in range(20):
                began = time.perf_counter()
                loaded = await whole.load(long, ORDER_PROJECTION)
                folds.append(time.perf_counter() - began)
            assert loaded.version == stream_events, loaded.version
            figures["fold_long_without_snapshot"] = _percentiles(folds, 1)
            figures["stream_events"] = stream_events
            await clients.close_all()
        await host.stop()
        return figures

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="measurement", required=True)
    p = sub.add_parser("coldstart")
    p.add_argument("app", choices=["ours", "baseline", "floor"])
    p = sub.add_parser("first")
    p.add_argument("app", choices=["ours", "baseline"])
    p.add_argument("kind", choices=sorted(FIRST))
    p = sub.add_parser("http")
    p.add_argument("app", choices=["ours", "baseline"])
    p.add_argument("--vault", required=True)
    p.add_argument("--invocations", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--telemetry", choices=["off", "on"], default="off")
    p.add_argument("--auth", choices=["key", "token", "token-each"], default="key")
    p = sub.add_parser("etl")
    p.add_argument("impl", choices=["ours", "baseline", "reference"])
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--trace-memory", action="store_true")
    p = sub.add_parser("raw-upsert")
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p = sub.add_parser("pipeline")
    p.add_argument("step", choices=["split", "segment"])
    p.add_argument("--blob", required=True)
    p.add_argument("--etag", required=True)
    p.add_argument("--size", type=int, required=True)
    p = sub.add_parser("orders")
    p.add_argument("impl", choices=["ours", "baseline"])
    p.add_argument("--operations", type=int, required=True)
    p.add_argument("--stream-events", type=int, default=1000)
    p = sub.add_parser("cleanup")
    p.add_argument("impl", choices=["ours", "baseline", "raw"])
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.measurement == "coldstart":
        result = coldstart(args.app)
    elif args.measurement == "first":
        result = first_response(args.app, args.kind)
    elif args.measurement == "http":
        result = http(args.app, args.vault, args.invocations, args.warmup, args.telemetry == "on", args.auth)
    elif args.measurement == "etl":
        result = etl(args.impl, args.records, args.trace_memory)
    elif args.measurement == "raw-upsert":
        result = raw_upsert(args.records, args.concurrency)
    elif args.measurement == "orders":
        result = orders_api(args.impl, args.operations, args.stream_events)
    elif args.measurement == "pipeline":
        result = pipeline_step(args.step, args.blob, args.etag, args.size)
    else:
        result = cleanup(args.impl, args.items, args.concurrency)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
