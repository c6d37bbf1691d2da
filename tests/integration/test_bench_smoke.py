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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_smoke_run_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)], cwd=APP_ROOT,
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    figures = {row["figure"]: row for row in results["rows"]}
    expected = ["cold start: load the 4 functions (beyond azure.functions)", "warm HTTP requests per second", "warm HTTP p50 latency",
                "ETL 200 records/s (loopback, 0 ms)", "ETL 200 tracemalloc peak (0.1 MB blob)",
                "cleanup deletes/s (loopback, 0 ms)", "cleanup deletes/s (5 ms round trip)"]
    for name in expected:
        assert name in figures, sorted(figures)
        assert figures[name]["ours"] > 0 and figures[name]["baseline"] > 0
    assert results["coldstart"]["median_modules"]["baseline"] > results["coldstart"]["median_modules"]["ours"]
    assert results["etl"]["200"]["ours_traced"]["tracemalloc_peak_bytes"] > 0
    assert "| figure" in result.stdout and "ours/baseline" in result.stdout
