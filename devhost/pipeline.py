"""Driving the data-processing pipeline on the emulators (the integration tests and the benchmark).

A development tool, never deployed.

A :class:`Pipeline` owns one run's Storage queue (and its poison queue) and points the app's
settings at the emulators. BlobEtl's part (the BlobCreated event) runs in the calling process,
as the Event Grid trigger would; BlobEtlWorker runs either in worker processes (the
development host's queue workers, ``make start ARGS="--workers N"``) or, with
:meth:`drain`, in this process (the queue extension's rules: a failed message comes back,
the last delivery goes to the poison queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.host_config import queue_max_dequeue_count
from devhost.emulators import Emulators, stop_process_groups
from devhost.start import PROJECT_ROOT, queue_worker_command

SUMMARY_CONTAINER = "summaries"


class _Context:
    """What the Functions worker passes as ``context`` (for the app's log lines)."""

    trace_context = None

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.invocation_id = str(uuid.uuid4())
        self.function_directory = str(PROJECT_ROOT / function_name)
INPUT_CONTAINER = "incoming"


def record(prefix: str, index: int, data: str = "payload") -> dict[str, str]:
    return {"id": f"{prefix}{index}", "data": f"{data}-{index}", "source": f"src{index % 7}", "type": f"t{index % 3}"}


@dataclass
class Blob:
    """A generated blob and what processing it must give."""

    data: bytes
    total: int
    valid_ids: set[str]
    invalid_indexes: list[int]


def _records(count: int, prefix: str, data: str,
             invalid_at: Callable[[int], str | None]) -> tuple[list[str], set[str], list[int]]:
    """``count`` records as JSON texts; ``invalid_at(index)`` is the text of an invalid one, or None."""
    texts: list[str] = []
    valid: set[str] = set()
    invalid: list[int] = []
    for index in range(count):
        bad = invalid_at(index)
        if bad is not None:
            texts.append(bad)
            invalid.append(index)
        else:
            item = record(prefix, index, data)
            texts.append(json.dumps(item))
            valid.add(item["id"])
    return texts, valid, invalid


def jsonl_blob(count: int, prefix: str, *, bad_every: int = 997, data: str = "payload") -> Blob:
    """JSON Lines with invalid records scattered through it (a line that is not JSON, a record
    missing 'source') and a blank line now and then (not a record)."""

    def invalid_at(index: int) -> str | None:
        if index % bad_every == 13:
            return "{not json"
        if index % (bad_every + 502) == 7:
            return json.dumps({"id": f"{prefix}{index}", "data": "x", "type": "t"})
        return None

    texts, valid, invalid = _records(count, prefix, data, invalid_at)
    lines: list[str] = []
    for index, text in enumerate(texts):
        lines.append(text)
        if index % 4999 == 100:
            lines.append("")
    return Blob(("\n".join(lines) + "\n").encode(), count, valid, invalid)


def json_array_blob(count: int, prefix: str, *, bad_every: int = 499, data: str = "payload") -> Blob:
    """A JSON array with invalid records scattered through it (not an object, an id not a string)."""

    def invalid_at(index: int) -> str | None:
        if index % bad_every == 3:
            return "[1, 2]"
        if index % (bad_every + 1) == 11:
            return json.dumps({"id": index, "data": "x", "source": "s", "type": "t"})
        return None

    elements, valid, invalid = _records(count, prefix, data, invalid_at)
    return Blob(("[\n" + ",\n".join(elements) + "\n]\n").encode(), count, valid, invalid)


@dataclass
class Pipeline:
    emulators: Emulators
    database: str
    container: str
    tmp_path: Path
    settings: dict[str, str] = field(default_factory=dict)
    queue: str = field(default_factory=lambda: f"etl-{uuid.uuid4().hex[:10]}")
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = {
            "EtlStorage": self.emulators.azurite_connection_string,
            "CosmosConnection": self.emulators.cosmos_connection_string,
            "COSMOS_DATABASE": self.database, "COSMOS_CONTAINER": self.container,
            "ETL_INPUT_CONTAINER": INPUT_CONTAINER, "ETL_SUMMARY_CONTAINER": SUMMARY_CONTAINER,
            "ETL_WORK_QUEUE": self.queue, "ETL_INLINE_MAX_BYTES": "0",
            **self.settings,
        }

    def apply(self) -> None:
        """Point this process's app settings at this pipeline."""
        from common import settings

        os.environ.update(self.settings)
        settings.reset_cache()

    async def create_queues(self) -> None:
        from azure.storage.queue.aio import QueueServiceClient

        async with QueueServiceClient.from_connection_string(self.emulators.azurite_connection_string) as service:
            for name in (self.queue, f"{self.queue}-poison"):
                await service.create_queue(name)

    # ------------------------------------------------------------ worker processes

    def start_workers(self, count: int, *, lease_seconds: float = 30, **extra_env: str) -> list[subprocess.Popen[bytes]]:
        local_settings = self.tmp_path / "worker.settings.json"
        if not local_settings.exists():
            local_settings.write_text(json.dumps({"IsEncrypted": False, "Values": {}}))
        env = {**os.environ, **self.settings, "DEVHOST_QUEUE_LEASE_SECONDS": str(lease_seconds),
               "PYTHONUNBUFFERED": "1", **extra_env}
        started = []
        for _ in range(count):
            log = open(self.tmp_path / f"worker-{len(self.workers)}.log", "wb")  # noqa: SIM115 - closed by the OS
            process = subprocess.Popen(queue_worker_command(local_settings), cwd=PROJECT_ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self.workers.append(process)
            started.append(process)
        return started

    def wait_workers_ready(self, timeout: float = 60.0) -> None:
        """Until every worker process says it runs its queue triggers (the runtime loaded the app)."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.worker_logs()
            if all(f"queue worker {process.pid} running" in logs for process in self.workers):
                return
            self._check_workers_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"queue workers not ready within {timeout} s:\n{logs[-3000:]}")
            time.sleep(0.1)

    def worker_cpu_seconds(self) -> list[float]:
        """CPU seconds (user + system) each worker process has used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        seconds = []
        for process in self.workers:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds.append((int(fields[11]) + int(fields[12])) / ticks)
        return seconds

    def stop_workers(self) -> None:
        stop_process_groups(self.workers, grace_seconds=20)

    def worker_logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.tmp_path.glob("worker-*.log")))

    def worker_events(self, event: str) -> list[dict[str, Any]]:
        found = []
        for line in self.worker_logs().splitlines():
            if line.startswith("{") and f'"event":"{event}"' in line:
                found.append(json.loads(line))
        return found

    # ----------------------------------------------------------------- the blob side

    async def upload(self, name: str, data: bytes) -> str:
        from common import clients

        client = clients.blob_service_client("EtlStorage").get_blob_client(INPUT_CONTAINER, name)
        return str((await client.upload_blob(data, overwrite=True))["etag"])

    async def trigger(self, name: str, etag: str) -> str:
        """What BlobEtl does with the BlobCreated event of ``name`` at ``etag``."""
        from common import clients, settings
        from common.logs import bind_invocation
        from etl import BlobCreated, BlobRef, handle_blob_created

        cfg = settings.etl_settings()
        return await handle_blob_created(
            BlobCreated(BlobRef(INPUT_CONTAINER, name), etag.strip('"'), None), cfg=cfg,
            log=bind_invocation(_Context("BlobEtl")),
            blob_service=clients.blob_service_client("EtlStorage"),
            queue=lambda: clients.storage_queue(cfg.work_queue), container=clients.cosmos_container,
            throttle=clients.cosmos_throttle_signal())

    async def summary(self, name: str, etag: str, timeout: float = 240.0) -> dict[str, Any]:
        """The readable summary of ``name`` once it is the summary of version ``etag``."""
        from azure.core.exceptions import ResourceNotFoundError

        from common import clients

        client = clients.blob_service_client("EtlStorage").get_blob_client(SUMMARY_CONTAINER, f"{name}.summary.json")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                properties = await client.get_blob_properties()
                if (properties.metadata or {}).get("sourceetag") == etag.strip('"'):
                    return dict(json.loads(await (await client.download_blob()).readall()))
            except ResourceNotFoundError:
                pass
            self._check_workers_alive()
            await asyncio.sleep(0.5)
        raise AssertionError(f"no summary of {name} at {etag} within {timeout} s; worker logs:\n"
                             + self.worker_logs()[-4000:])

    async def run_summary(self, name: str, etag: str, timeout: float = 240.0) -> dict[str, Any]:
        """The version's own summary (``_runs/<token>/summary.json``), written even when the blob changed."""
        from azure.core.exceptions import ResourceNotFoundError

        from common import clients
        from etl import RUNS_PREFIX, BlobVersion

        token = BlobVersion(INPUT_CONTAINER, name, etag, 0).token
        client = clients.blob_service_client("EtlStorage").get_blob_client(
            SUMMARY_CONTAINER, f"{RUNS_PREFIX}/{token}/summary.json")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ResourceNotFoundError):
                return dict(json.loads(await (await client.download_blob()).readall()))
            self._check_workers_alive()
            await asyncio.sleep(0.5)
        raise AssertionError(f"no run summary of {name} at {etag} within {timeout} s")

    def _check_workers_alive(self) -> None:
        for process in self.workers:
            code = process.poll()
            if code is not None and code not in (0, -signal.SIGKILL, -signal.SIGTERM):
                raise AssertionError(f"worker {process.pid} exited with {code}:\n{self.worker_logs()[-4000:]}")

    # ------------------------------------------------------------------ Cosmos side

    def item_ids(self) -> list[str]:
        """The ids of every item in the run's (fresh) container, as the emulator holds them."""
        return self.emulators.cosmos_item_ids(self.container)

    async def items(self, ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """The items with these ids (None for each that does not exist), by point reads."""
        from azure.core.exceptions import ResourceNotFoundError

        from common import clients

        container = clients.cosmos_container()
        found: dict[str, dict[str, Any] | None] = {}
        for item_id in ids:
            try:
                found[item_id] = await container.read_item(item_id, partition_key=item_id)
            except ResourceNotFoundError:
                found[item_id] = None
        return found

    # ----------------------------------------------------------- in-process worker

    async def drain(self, *, until: float = 120.0, lease_seconds: int = 30) -> None:
        """Run BlobEtlWorker in this process until the work queue stays empty, with the queue
        extension's rules: delete on success; on failure release it, or on the last delivery
        move it to the poison queue."""
        from common import clients, settings
        from common.logs import bind_invocation
        from etl import handle_work

        cfg = settings.etl_settings()
        queue = clients.storage_queue(cfg.work_queue)
        poison = clients.storage_queue(f"{cfg.work_queue}-poison")
        deadline = time.monotonic() + until
        idle_since: float | None = None
        while time.monotonic() < deadline:
            messages = [m async for m in queue.receive_messages(max_messages=4, visibility_timeout=lease_seconds)]
            if not messages:
                props = await queue.get_queue_properties()
                if props.approximate_message_count == 0:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 1.5:
                        return
                await asyncio.sleep(0.2)
                continue
            idle_since = None

            async def one(message: Any) -> None:
                try:
                    await handle_work(bytes(message.content), message_id=message.id,
                                      dequeue_count=message.dequeue_count,
                                      max_dequeue_count=queue_max_dequeue_count(), cfg=cfg,
                                      log=bind_invocation(_Context("BlobEtlWorker")),
                                      blob_service=clients.blob_service_client("EtlStorage"),
                                      queue=lambda: queue, container=clients.cosmos_container,
                                      throttle=clients.cosmos_throttle_signal())
                except Exception:
                    if message.dequeue_count >= queue_max_dequeue_count():
                        await poison.send_message(bytes(message.content))
                        await queue.delete_message(message.id, message.pop_receipt)
                    else:
                        await queue.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=0)
                    return
                await queue.delete_message(message.id, message.pop_receipt)

            await asyncio.gather(*(one(m) for m in messages))
        raise AssertionError("the work queue did not drain in time")

    async def poison_messages(self) -> list[dict[str, Any]]:
        from common import clients

        poison = clients.storage_queue(f"{self.queue}-poison")
        return [json.loads(bytes(m.content)) for m in await poison.peek_messages(max_messages=32)]

