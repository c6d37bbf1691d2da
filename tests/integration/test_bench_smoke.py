"""The benchmark's own code, run end to end at tiny sizes: every figure is measured and reported.

No timing is asserted here (benchmarks are not tests); only that each measurement ran and
produced a number, so `make bench` can be trusted to run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import APP_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def test_smoke_run_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)], cwd=APP_ROOT,
                            capture_output=True, text=True, timeout=380)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    figures = {row["figure"]: row for row in results["rows"]}
    # Figures with ours and the naive baseline side by side.
    paired = ["cold start: load the functions (beyond azure.functions)", "warm HTTP requests per second",
              "warm HTTP p50 latency", "cold start to first response: HttpGreeting",
              "cold start to first response: BlobEtl", "cold start to first response: CleanupTimer",
              "ETL client CPU per record (loopback), median", "Cosmos server CPU per request (loopback), median",
              "ETL records/s vs the code before the transport change (0 ms)", "cleanup client CPU per delete (loopback)",
              "ETL records/s at 0 ms round trip", "ETL records/s at 5 ms round trip", "ETL records/s at 10 ms round trip"]
    for name in paired:
        assert name in figures, sorted(figures)
        assert figures[name]["ours"] > 0 and figures[name]["baseline"] > 0, name
    # Figures of ours alone, each with its target and a verdict.
    for name in ["ETL 200 tracemalloc peak (0.1 MB blob)", "BlobEtl share of a 1000 RU/s budget",
                 "CleanupTimer share of a 1000 RU/s budget"]:
        assert figures[name]["ours"] > 0 and figures[name]["target"], name
    assert figures["two BlobEtl runs sharing 1000 RU/s"]["met"] is True
    # Callers: a bearer token's cold and warm costs, and the key from an app setting against the vault.
    for name in ("cold start to first response: HttpGreeting, a bearer token",
                 "cold start to first response: PublishEvent, a bearer token (body refused after it: 400)"):
        assert figures[name]["ours"] > 0, name
    versus = figures["warm HTTP requests per second, bearer token vs API key"]
    assert versus["ours"] > 0 and versus["baseline"] > 0 and versus["target"] and versus["met"] in (True, False)
    each = figures["warm HTTP requests per second, a new token on each request vs API key"]
    assert each["ours"] > 0 and each["baseline"] > 0
    setting = figures["cold start to first response: HttpGreeting, key from an app setting vs from Key Vault"]
    assert setting["ours"] > 0 and setting["baseline"] > 0
    assert results["coldstart"]["median_modules"]["baseline"] > results["coldstart"]["median_modules"]["ours"]
    cpu = results["client_cpu"]["summary"]
    assert set(cpu) == {"ours", "ours_env_lookups", "reference", "baseline"}
    assert all(entry["server_ms_per_request"] > 0 for entry in cpu.values())
    assert results["ru_budget"]["etl"]["server_charged"] >= 150 * 5
    assert "| figure" in result.stdout and "ours/naive" in result.stdout
    chart = out.with_suffix(".svg").read_text()  # the picture beside the table
    assert chart.startswith("<svg") and chart.count("<rect") > 10
    for title in ("Pipeline records/s per worker process count", "Pipeline peak RSS growth per blob size",
                  "Cold start to the first response"):
        assert title in chart, title
    # The pipeline: a rate per worker count, each worker's CPU, and both steps' memory on two blob sizes.
    assert figures["pipeline records/s, 1 worker process"]["ours"] > 0
    assert figures["pipeline records/s, 2 worker processes"]["baseline"] > 0
    scaling = results["pipeline"]["scaling"]
    assert {len(run["worker_cpu_seconds"]) for run in scaling.values()} == {1, 2}
    for step in ("splitting", "one segment's worker"):
        row = figures[f"pipeline peak RSS growth, {step}: 2 MB vs 1 MB blob"]
        assert row["ours"] is not None and row["baseline"] is not None and row["target"] == "differ by < 20 MB"
