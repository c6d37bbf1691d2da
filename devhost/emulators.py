"""Local emulators for development and tests: Azurite (Blob, Queue) and a Cosmos DB API server.

A development tool, never deployed (``.funcignore`` excludes ``devhost/``).
Both run from the npm packages pinned in ``package.json`` on loopback, with
their data in a folder of the caller's choosing::

    with Emulators.start(data_dir, blob_port=10000, cosmos_port=8081) as emu:
        emu.azurite_connection_string   # for EtlStorage / AzureWebJobsStorage
        emu.cosmos_connection_string    # for CosmosConnection

Every process started is stopped (its whole process group) on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = PROJECT_ROOT / "node_modules" / ".bin"

#: Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: The Cosmos DB emulator's well-known key (the API server accepts any key).
COSMOS_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="


class EmulatorError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def azurite_connection_string(blob_port: int, queue_port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{blob_port}/{AZURITE_ACCOUNT};"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/{AZURITE_ACCOUNT};"
    )


def cosmos_connection_string(port: int) -> str:
    return f"AccountEndpoint=https://127.0.0.1:{port}/;AccountKey={COSMOS_KEY};"


def _node_tool(name: str) -> Path:
    tool = NODE_BIN / name
    if not tool.exists():
        raise EmulatorError(f"{tool} is missing: run 'npm ci' in {PROJECT_ROOT} (make test and make start do it)")
    return tool


def stop_with_parent() -> None:
    """In the child, before it runs: SIGTERM when the process that started it dies, however it dies
    (kill -9 included), so no emulator outlives its ``make start`` and holds the ports (Linux
    prctl PR_SET_PDEATHSIG; elsewhere nothing is asked)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_process_groups(processes: list[subprocess.Popen[bytes]], *, grace_seconds: float) -> None:
    """SIGTERM to each process's group, then SIGKILL to a group still running after ``grace_seconds``."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace_seconds)


@dataclass
class Emulators:
    data_dir: Path
    blob_port: int
    queue_port: int
    table_port: int
    cosmos_port: int
    #: Added to every Cosmos response (benchmarks model a network round trip with it).
    cosmos_latency_ms: int = 0
    #: Request units per second the Cosmos server grants before it answers 429 (0: no budget);
    #: see scripts/cosmos-server.js for what each request is charged.
    cosmos_ru_per_second: float = 0
    #: The local OpenID issuer's port (devhost.issuer), or None not to run one.
    issuer_port: int | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def azurite_connection_string(self) -> str:
        return azurite_connection_string(self.blob_port, self.queue_port)

    @property
    def cosmos_connection_string(self) -> str:
        return cosmos_connection_string(self.cosmos_port)

    @classmethod
    @contextlib.contextmanager
    def start(cls, data_dir: Path, *, blob_port: int | None = None, queue_port: int | None = None,
              table_port: int | None = None, cosmos_port: int | None = None,
              cosmos_latency_ms: int = 0, cosmos_ru_per_second: float = 0, issuer_port: int | None = None,
              timeout: float = 60.0) -> Iterator[Emulators]:
        """Start both emulators (and the local issuer on ``issuer_port``), wait until they answer,
        stop them on exit."""
        emulators = cls(Path(data_dir), blob_port or free_port(), queue_port or free_port(),
                        table_port or free_port(), cosmos_port or free_port(), cosmos_latency_ms, cosmos_ru_per_second,
                        issuer_port)
        try:
            emulators._launch(timeout)
            yield emulators
        finally:
            emulators.stop()

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / log_name, "ab")  # noqa: SIM115 - owned by the process for its lifetime
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=PROJECT_ROOT, start_new_session=True, env={**os.environ, **(env or {})},
                                   preexec_fn=stop_with_parent)
        log.close()
        self.processes.append(process)
        return process

    def _launch(self, timeout: float) -> None:
        for port in (self.blob_port, self.queue_port, self.table_port, self.cosmos_port, self.issuer_port):
            if port is not None and port_open(port):
                raise EmulatorError(f"port {port} on 127.0.0.1 is already in use (another emulator running?)")
        azurite_dir = self.data_dir / "azurite"
        azurite_dir.mkdir(parents=True, exist_ok=True)
        self._spawn([
            str(_node_tool("azurite")), "--silent", "--location", str(azurite_dir),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
            "--skipApiVersionCheck", "--disableTelemetry", "--loose",
        ], "azurite.log")
        node = shutil.which("node")
        if node is None:
            raise EmulatorError("node is not on the PATH: install Node.js 20 or newer")
        self._spawn([node, str(PROJECT_ROOT / "scripts" / "cosmos-server.js"), str(self.cosmos_port)], "cosmos.log",
                    env={"COSMOS_LATENCY_MS": str(self.cosmos_latency_ms),
                         "COSMOS_RU_PER_SECOND": str(self.cosmos_ru_per_second)})
        if self.issuer_port is not None:
            self._spawn([sys.executable, "-m", "devhost.issuer", "--port", str(self.issuer_port),
                         "--key", str(self.data_dir / "issuer" / "signing-key.pem")], "issuer.log")
        deadline = time.monotonic() + timeout
        for port in (self.blob_port, self.queue_port, self.cosmos_port, self.issuer_port):
            while port is not None and not port_open(port):
                for process in self.processes:
                    if process.poll() is not None:
                        raise EmulatorError(f"an emulator exited with code {process.returncode}: "
                                            f"see the logs in {self.data_dir}")
                if time.monotonic() > deadline:
                    raise EmulatorError(f"emulator port {port} did not open within {timeout:g} s; logs in {self.data_dir}")
                time.sleep(0.1)

    def cosmos_stats(self) -> dict[str, float]:
        """The Cosmos server's counters: CPU seconds, requests, RU charged, requests throttled."""
        import json
        import ssl
        import urllib.request

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the local server's self-signed certificate
        with urllib.request.urlopen(f"https://127.0.0.1:{self.cosmos_port}/_bench/stats", context=context,
                                    timeout=10) as response:
            return dict(json.loads(response.read()))

    def cosmos_item_ids(self, collection: str) -> list[str]:
        """The ids of every item in the Cosmos container named ``collection`` (the server's own list;
        a COUNT query on this emulator scans at a few thousand items a second)."""
        import json
        import ssl
        import urllib.parse
        import urllib.request

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        query = urllib.parse.urlencode({"collection": collection})
        with urllib.request.urlopen(f"https://127.0.0.1:{self.cosmos_port}/_bench/ids?{query}", context=context,
                                    timeout=60) as response:
            return list(json.loads(response.read()))

    def cosmos_faults(self, partition_key_contains: str | None, status: int = 503) -> dict[str, object]:
        """Make the Cosmos server fail every write whose partition key holds ``partition_key_contains``
        with ``status`` (None clears it); the SDK sees the service's own error response."""
        import json
        import ssl
        import urllib.parse
        import urllib.request

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        query = urllib.parse.urlencode({"partitionKeyContains": partition_key_contains or "", "status": status})
        request = urllib.request.Request(f"https://127.0.0.1:{self.cosmos_port}/_faults?{query}",
                                         method="POST" if partition_key_contains else "DELETE")
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return dict(json.loads(response.read()))

    def stop(self) -> None:
        """Stop every process started (SIGTERM to its group, SIGKILL after 5 s)."""
        stop_process_groups(self.processes, grace_seconds=5)
        self.processes.clear()


async def provision(*, azurite: str, cosmos: str, database: str, containers: dict[str, str],
                    blob_containers: list[str], queues: list[str] = ()) -> None:  # type: ignore[assignment]
    """Create what the app needs on the emulators (the app itself never creates anything).

    ``containers`` maps Cosmos container names to partition key paths; ``queues`` are Storage
    queues, each created with its ``-poison`` queue.
    """
    from azure.core.exceptions import ResourceExistsError
    from azure.cosmos import PartitionKey
    from azure.cosmos.aio import CosmosClient
    from azure.storage.blob.aio import BlobServiceClient
    from azure.storage.queue.aio import QueueServiceClient

    async with BlobServiceClient.from_connection_string(azurite) as blobs:
        for name in blob_containers:
            with contextlib.suppress(ResourceExistsError):
                await blobs.create_container(name)
    if queues:
        async with QueueServiceClient.from_connection_string(azurite) as queue_service:
            for name in queues:
                for queue in (name, f"{name}-poison"):
                    with contextlib.suppress(ResourceExistsError):
                        await queue_service.create_queue(queue)
    client = CosmosClient.from_connection_string(cosmos, connection_verify=False, enable_endpoint_discovery=False)
    try:
        db = await client.create_database_if_not_exists(database)
        for name, path in containers.items():
            await db.create_container_if_not_exists(name, partition_key=PartitionKey(path=path))
    finally:
        await client.close()
