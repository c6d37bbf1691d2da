"""``make bench``: our app against the naive baseline and against the emulator's own limit.

Starts what it needs (Azurite and the Cosmos DB API server twice: on loopback, and with
5 ms added per response to model a network round trip; a local HTTPS Key Vault stub),
runs every measurement in a fresh process (``bench.workers``), prints a table of figures,
ratios and targets, writes ``bench/results.json``, and stops everything it started.

    python -m bench.run            # full: about 8-9 minutes on 2 cores
    python -m bench.run --quick    # reduced sizes: under 2 minutes
    python -m bench.run --smoke    # tiny sizes, for the test suite

Absolute times drift on a shared machine; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.keyvault_stub import make_certificate
from bench.workers import API_KEY
from devhost.emulators import Emulators, free_port, port_open, provision

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench"
LATENCY_MS = 5


@dataclass(frozen=True)
class Sizes:
    coldstart_runs: int
    http_ours: int
    http_baseline: int
    etl_records: tuple[int, ...]
    etl_baseline_max: int
    etl_baseline_traced_max: int
    raw_records: int
    cleanup_items: int
    latency_records: int


FULL = Sizes(coldstart_runs=3, http_ours=2000, http_baseline=200, etl_records=(5000, 50000), etl_baseline_max=50000,
             etl_baseline_traced_max=5000,
             raw_records=5000, cleanup_items=2000, latency_records=3000)
QUICK = Sizes(coldstart_runs=3, http_ours=500, http_baseline=50, etl_records=(1000, 5000), etl_baseline_max=5000,
              etl_baseline_traced_max=1000,
              raw_records=2000, cleanup_items=500, latency_records=1000)
SMOKE = Sizes(coldstart_runs=1, http_ours=30, http_baseline=5, etl_records=(200,), etl_baseline_max=200,
              etl_baseline_traced_max=200,
              raw_records=200, cleanup_items=60, latency_records=100)


@dataclass
class Row:
    figure: str
    ours: float | None
    baseline: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.baseline is None or self.ours == 0 or self.baseline == 0:
            return None
        return self.ours / self.baseline


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def worker(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.workers", *args]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def keyvault_stub(folder: Path) -> Iterator[str]:
    cert, key = make_certificate(folder)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.keyvault_stub", "--port", str(port), "--cert", str(cert), "--key", str(key),
         "--secret", f"greeting-api-key={API_KEY}"], cwd=PROJECT_ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Key Vault stub did not start")
            time.sleep(0.1)
        yield f"https://127.0.0.1:{port}/"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def cosmos_env(emulators: Emulators, container: str) -> dict[str, str]:
    return {"CosmosConnection": emulators.cosmos_connection_string, "EtlStorage": emulators.azurite_connection_string,
            "COSMOS_DATABASE": DATABASE, "COSMOS_CONTAINER": container, "ETL_WRITE_CONCURRENCY": "32",
            "CLEANUP_DELETE_CONCURRENCY": "16", "RETENTION_DAYS": "30"}


def fresh_container(emulators: Emulators) -> str:
    name = f"c{uuid.uuid4().hex[:10]}"
    asyncio.run(provision(azurite=emulators.azurite_connection_string, cosmos=emulators.cosmos_connection_string,
                          database=DATABASE, containers={name: "/id"}, blob_containers=["incoming", "summaries"]))
    return name


def measure_coldstart(sizes: Sizes, rows: list[Row], results: dict[str, Any]) -> None:
    say("cold start: loading all four functions through the runtime library, fresh process per run")
    runs = {app: [worker("coldstart", app) for _ in range(sizes.coldstart_runs)] for app in ("ours", "baseline")}
    load_ms = {app: statistics.median(r["load_seconds"] for r in runs[app]) * 1000 for app in runs}
    modules = {app: statistics.median(r["modules"] for r in runs[app]) for app in runs}
    floor_ms = statistics.median(r["floor_seconds"] for r in runs["ours"] + runs["baseline"]) * 1000
    results["coldstart"] = {"runs": runs, "median_load_ms": load_ms, "median_modules": modules,
                            "median_floor_ms": floor_ms}
    ratio = load_ms["baseline"] / load_ms["ours"]
    rows.append(Row("cold start: load the 4 functions (beyond azure.functions)", load_ms["ours"], load_ms["baseline"],
                    "ms", "< 100 ms and >= 10x less", load_ms["ours"] < 100 and ratio >= 10,
                    f"runtime + azure.functions floor {floor_ms:.0f} ms; baseline/ours = {ratio:.1f}x"))
    rows.append(Row("modules imported loading the functions", modules["ours"], modules["baseline"], "modules"))


def measure_http(sizes: Sizes, vault: str, rows: list[Row], results: dict[str, Any]) -> None:
    say("warm HTTP: HttpGreeting through the runtime library, API key from the Key Vault stub")
    ours = worker("http", "ours", "--vault", vault, "--invocations", str(sizes.http_ours))
    traced = worker("http", "ours", "--vault", vault, "--invocations", str(sizes.http_ours), "--telemetry", "on")
    base = worker("http", "baseline", "--vault", vault, "--invocations", str(sizes.http_baseline), "--warmup", "2")
    results["http"] = {"ours": ours, "ours_telemetry_on": traced, "baseline": base}
    ratio = ours["rps"] / base["rps"]
    rows.append(Row("warm HTTP requests per second", ours["rps"], base["rps"], "req/s", ">= 20x", ratio >= 20,
                    f"ours/baseline = {ratio:.1f}x"))
    rows.append(Row("warm HTTP p50 latency", ours["p50_ms"], base["p50_ms"], "ms", "ours < 1 ms", ours["p50_ms"] < 1))
    rows.append(Row("warm HTTP p99 latency", ours["p99_ms"], base["p99_ms"], "ms"))
    rows.append(Row("HttpGreeting p50, telemetry on vs off", traced["p50_ms"], ours["p50_ms"], "ms",
                    note="ours = on (SDK, spans and metrics recorded), baseline column = off (no-op API)"))


def measure_etl(sizes: Sizes, loopback: Emulators, rows: list[Row], results: dict[str, Any]) -> None:
    results["etl"] = {}
    raw = worker("raw-upsert", "--records", str(sizes.raw_records), "--concurrency", "32",
                 env=cosmos_env(loopback, fresh_container(loopback)))
    results["etl"]["raw_limit"] = raw
    for records in sizes.etl_records:
        say(f"Blob ETL: {records:,} records against Azurite and the Cosmos DB API server")
        ours = worker("etl", "ours", "--records", str(records), env=cosmos_env(loopback, fresh_container(loopback)))
        ours_mem = worker("etl", "ours", "--records", str(records), "--trace-memory",
                          env=cosmos_env(loopback, fresh_container(loopback)))
        entry: dict[str, Any] = {"ours": ours, "ours_traced": ours_mem}
        base = base_mem = None
        if records <= sizes.etl_baseline_max:
            base = worker("etl", "baseline", "--records", str(records), env=cosmos_env(loopback, fresh_container(loopback)))
            entry.update(baseline=base)
        if records <= sizes.etl_baseline_traced_max:
            # Tracing the baseline's sequential writes takes minutes at 50,000 records: its RSS
            # growth (from the untraced run) shows its copies there.
            base_mem = worker("etl", "baseline", "--records", str(records), "--trace-memory",
                              env=cosmos_env(loopback, fresh_container(loopback)))
            entry.update(baseline_traced=base_mem)
        results["etl"][str(records)] = entry
        blob_mb = ours["blob_bytes"] / 1e6
        ratio = ours["records_per_second"] / base["records_per_second"] if base else None
        rows.append(Row(f"ETL {records:,} records/s (loopback, 0 ms)", ours["records_per_second"],
                        base["records_per_second"] if base else None, "rec/s", ">= 5x baseline",
                        ratio is not None and ratio >= 5, f"ours/baseline = {ratio:.1f}x" if ratio else ""))
        share = ours["records_per_second"] / raw["records_per_second"]
        rows.append(Row(f"ETL {records:,} share of the raw upsert limit", share * 100, None, "%", ">= 80%", share >= 0.8,
                        f"raw limit {raw['records_per_second']:.0f} rec/s at concurrency 32"))
        peak_ratio = ours_mem["tracemalloc_peak_bytes"] / ours["blob_bytes"]
        rows.append(Row(f"ETL {records:,} tracemalloc peak ({blob_mb:.1f} MB blob)",
                        ours_mem["tracemalloc_peak_bytes"] / 1e6,
                        base_mem["tracemalloc_peak_bytes"] / 1e6 if base_mem else None, "MB", "< 2x blob size",
                        peak_ratio < 2, f"ours = {peak_ratio:.2f}x the blob"))
        rows.append(Row(f"ETL {records:,} RSS growth", ours["rss_delta_bytes"] / 1e6,
                        base["rss_delta_bytes"] / 1e6 if base else None, "MB",
                        note="includes clients, TLS and interpreter growth, not only data"))


def measure_cleanup(sizes: Sizes, emulators: Emulators, label: str, rows: list[Row], results: dict[str, Any]) -> None:
    say(f"cleanup: {sizes.cleanup_items:,} expired items ({label})")
    items = str(sizes.cleanup_items)
    raw = worker("cleanup", "raw", "--items", items, "--concurrency", "16",
                 env=cosmos_env(emulators, fresh_container(emulators)))
    ours = worker("cleanup", "ours", "--items", items, env=cosmos_env(emulators, fresh_container(emulators)))
    base = worker("cleanup", "baseline", "--items", items, env=cosmos_env(emulators, fresh_container(emulators)))
    results.setdefault("cleanup", {})[label] = {"ours": ours, "baseline": base, "raw_limit": raw}
    ratio = ours["deletes_per_second"] / base["deletes_per_second"]
    share = ours["deletes_per_second"] / raw["deletes_per_second"]
    rows.append(Row(f"cleanup deletes/s ({label})", ours["deletes_per_second"], base["deletes_per_second"], "del/s",
                    ">= 3x baseline", ratio >= 3, f"ours/baseline = {ratio:.1f}x"))
    rows.append(Row(f"cleanup share of the raw delete limit ({label})", share * 100, None, "%", ">= 80%", share >= 0.8,
                    f"raw limit {raw['deletes_per_second']:.0f} del/s at concurrency 16"))


def measure_latency_etl(sizes: Sizes, emulators: Emulators, rows: list[Row], results: dict[str, Any]) -> None:
    records = sizes.latency_records
    say(f"Blob ETL with {LATENCY_MS} ms per Cosmos response: {records:,} records")
    ours = worker("etl", "ours", "--records", str(records), env=cosmos_env(emulators, fresh_container(emulators)))
    base = worker("etl", "baseline", "--records", str(records), env=cosmos_env(emulators, fresh_container(emulators)))
    raw = worker("raw-upsert", "--records", str(records), "--concurrency", "32",
                 env=cosmos_env(emulators, fresh_container(emulators)))
    results["etl_latency"] = {"latency_ms": LATENCY_MS, "ours": ours, "baseline": base, "raw_limit": raw}
    ratio = ours["records_per_second"] / base["records_per_second"]
    share = ours["records_per_second"] / raw["records_per_second"]
    rows.append(Row(f"ETL {records:,} records/s ({LATENCY_MS} ms round trip)", ours["records_per_second"],
                    base["records_per_second"], "rec/s", ">= 5x baseline", ratio >= 5, f"ours/baseline = {ratio:.1f}x"))
    rows.append(Row(f"ETL share of the raw upsert limit ({LATENCY_MS} ms)", share * 100, None, "%", ">= 80%",
                    share >= 0.8, f"raw limit {raw['records_per_second']:.0f} rec/s"))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render(rows: list[Row]) -> str:
    header = ["figure", "ours", "baseline", "unit", "ratio", "target", "met", "note"]
    table = [header] + [[r.figure, _fmt(r.ours), _fmt(r.baseline), r.unit, _fmt(r.ratio), r.target,
                         "" if r.met is None else ("yes" if r.met else "NO"), r.note] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results.json")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    started = time.monotonic()
    rows: list[Row] = []
    results: dict[str, Any] = {
        "mode": mode_name, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        folder = Path(tmp)
        measure_coldstart(sizes, rows, results)
        with keyvault_stub(folder) as vault:
            measure_http(sizes, vault, rows, results)
        with Emulators.start(folder / "loopback") as loopback:
            measure_etl(sizes, loopback, rows, results)
            measure_cleanup(sizes, loopback, "loopback, 0 ms", rows, results)
        with Emulators.start(folder / "latency", cosmos_latency_ms=LATENCY_MS) as slow:
            measure_latency_etl(sizes, slow, rows, results)
            measure_cleanup(sizes, slow, f"{LATENCY_MS} ms round trip", rows, results)
    results["rows"] = [{**r.__dict__, "ratio": r.ratio} for r in rows]
    results["seconds"] = round(time.monotonic() - started, 1)
    table = render(rows)
    print(table)
    print(f"\n{mode_name} run on {results['machine']['cpus']} CPUs, Python {results['machine']['python']}, "
          f"{results['date']}, {results['seconds']:.0f} s")
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
