"""``make start``: the whole app locally on emulators, with or without Core Tools.

1. Writes ``local.settings.json`` from ``local.settings.example.json``: the whole file if it
   is missing, else only the settings it lacks (never changes a value already there; VS Code's
   Azure Functions extension writes a stub with only ``FUNCTIONS_WORKER_RUNTIME`` before F5).
2. Starts Azurite (Blob 10000, Queue 10001, Table 10002), the Cosmos DB API server (8081)
   and the local token issuer (7090, :mod:`devhost.issuer`) on loopback, data in
   ``.emulators/``, and waits until they answer.
3. Creates what the app needs there: the Cosmos database and container, the blob containers.
4. Runs the app: ``func start`` when Azure Functions Core Tools is on the PATH, else the
   development host (:mod:`devhost.host`) on http://localhost:7071.
5. On Ctrl-C (or SIGTERM) stops everything it started.

Options: ``--port``, ``--settings``, ``--workers N`` (N processes run the Storage queue
triggers, as N instances would in Azure), ``--no-emulators`` (use the emulators the settings
point at, already running), ``--devhost`` (even when Core Tools is installed),
``--emulators-only`` (steps 1-3, print ``emulators ready``, then wait: VS Code's F5 runs this
as a background task before ``func host start``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from devhost.emulators import EmulatorError, Emulators, provision, stop_process_groups, stop_with_parent
from devhost.host import DevHost, DevHostError, load_local_settings, say

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The local OpenID issuer's port (devhost.issuer.DEFAULT_PORT; local.settings.example.json names it).
ISSUER_PORT = 7090


def ensure_local_settings(path: Path, example: Path = PROJECT_ROOT / "local.settings.example.json") -> list[str]:
    """Give ``path`` every setting of the example it lacks, keeping every value it has; the names added."""
    if not path.exists():
        shutil.copyfile(example, path)
        return sorted(json.loads(example.read_text(encoding="utf-8")).get("Values", {}))
    wanted = json.loads(example.read_text(encoding="utf-8"))
    current = json.loads(path.read_text(encoding="utf-8") or "{}")
    values = current.setdefault("Values", {})
    added = sorted(name for name in wanted.get("Values", {}) if name not in values)
    for name in added:
        values[name] = wanted["Values"][name]
    for key, value in wanted.items():
        current.setdefault(key, value)
    if added:
        path.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
    return added


def _required(values: dict[str, str], name: str) -> str:
    value = os.environ.get(name) or values.get(name)
    if not value:
        raise DevHostError(f"local settings must set '{name}'")
    return value


async def provision_from_settings(values: dict[str, str]) -> None:
    await provision(
        azurite=_required(values, "EtlStorage"),
        cosmos=_required(values, "CosmosConnection"),
        database=_required(values, "COSMOS_DATABASE"),
        containers={_required(values, "COSMOS_CONTAINER"): "/id",
                    values.get("ORDERS_EVENTS_CONTAINER") or "order-events": "/streamId",
                    values.get("ORDERS_IDEMPOTENCY_CONTAINER") or "order-idempotency": "/id"},
        blob_containers=[values.get("ETL_INPUT_CONTAINER") or "incoming",
                         values.get("ETL_SUMMARY_CONTAINER") or "summaries"],
        queues=[values.get("ETL_WORK_QUEUE") or "etl-work"],
    )


@contextlib.contextmanager
def _emulators(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    say(f"starting Azurite (blob :10000, queue :10001), the Cosmos DB API server (:8081) and the local "
        f"token issuer (:{ISSUER_PORT}; tokens: python -m devhost.token)")
    with Emulators.start(PROJECT_ROOT / ".emulators", blob_port=10000, queue_port=10001, table_port=10002,
                         cosmos_port=8081, issuer_port=ISSUER_PORT):
        yield


def _run_core_tools(port: int) -> int:
    say("Azure Functions Core Tools found: running 'func start'")
    process = subprocess.Popen(["func", "start", "--port", str(port)], cwd=PROJECT_ROOT, start_new_session=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGINT)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait()


async def _run_devhost(port: int, state_dir: Path, role: str = "all") -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await DevHost(PROJECT_ROOT, port=port, state_dir=state_dir, role=role).run(stop)


def queue_worker_command(settings: Path) -> list[str]:
    """The command of one queue worker process (``--workers N`` starts N of them)."""
    return [sys.executable, "-m", "devhost.start", "--queue-worker", "--no-emulators", "--settings", str(settings)]


@contextlib.contextmanager
def _queue_workers(count: int, settings: Path) -> Iterator[None]:
    """``count`` processes that each run the Storage queue triggers (stopped on the way out)."""
    processes = [subprocess.Popen(queue_worker_command(settings), cwd=PROJECT_ROOT, start_new_session=True,
                                  preexec_fn=stop_with_parent) for _ in range(count)]
    if processes:
        say(f"started {count} queue worker processes: {', '.join(str(p.pid) for p in processes)}")
    try:
        yield
    finally:
        stop_process_groups(processes, grace_seconds=20)


def configure_logging() -> None:
    """The app's JSON log lines on stdout, as Core Tools shows function logs; the SDKs' chatter off."""
    from common.logs import quiet_sdk_loggers

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    quiet_sdk_loggers()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make start", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", type=Path, default=PROJECT_ROOT / "local.settings.json")
    parser.add_argument("--no-emulators", action="store_true", help="do not start emulators")
    parser.add_argument("--devhost", action="store_true", help="use the development host even if 'func' exists")
    parser.add_argument("--state-dir", type=Path, default=PROJECT_ROOT / ".emulators",
                        help="where the development host remembers processed blobs")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes that run the Storage queue triggers (BlobEtlWorker): 1 runs them in the "
                             "main process, N > 1 starts N worker processes beside it")
    parser.add_argument("--queue-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--emulators-only", action="store_true",
                        help="prepare settings and emulators, print 'emulators ready', and wait (VS Code's F5)")
    args = parser.parse_args(argv)
    configure_logging()

    # SIGTERM and SIGHUP (the terminal closed) end the run like Ctrl-C, so the emulators are
    # stopped either way; a SIGKILL cannot be caught: the emulators then stop with their parent
    # (devhost.emulators asks the kernel for it).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        added = ensure_local_settings(args.settings)
        if added:
            say(f"{args.settings.name}: added {len(added)} settings from local.settings.example.json "
                "(edit it; it is git-ignored)")
        values = load_local_settings(args.settings)
        if args.queue_worker:
            asyncio.run(_run_devhost(args.port, args.state_dir, role="queues"))
            return 0
        if args.workers < 1:
            raise DevHostError("--workers must be at least 1")
        with _emulators(not args.no_emulators):
            asyncio.run(provision_from_settings(values))
            say(f"provisioned Cosmos DB '{values.get('COSMOS_DATABASE')}' (containers "
                f"'{values.get('COSMOS_CONTAINER')}', '{values.get('ORDERS_EVENTS_CONTAINER') or 'order-events'}', "
                f"'{values.get('ORDERS_IDEMPOTENCY_CONTAINER') or 'order-idempotency'}') and the blob containers")
            if args.emulators_only:
                say("emulators ready")  # VS Code's background task waits for this line
                signal.pause()
                return 0
            if shutil.which("func") and not args.devhost:
                return _run_core_tools(args.port)
            workers = args.workers if args.workers > 1 else 0
            with _queue_workers(workers, args.settings):
                asyncio.run(_run_devhost(args.port, args.state_dir, role="front" if workers else "all"))
    except KeyboardInterrupt:
        pass
    except (DevHostError, EmulatorError) as exc:
        print(f"make start: {exc}", file=sys.stderr)
        return 1
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

