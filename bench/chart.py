"""The benchmark's picture: three bar charts drawn as one SVG from bench/results.json.

    .venv/bin/python -m bench.chart bench/results.json      # writes bench/results.svg

`make bench` writes it beside results.json. Pipeline records/s per worker count, the pipeline
steps' peak memory growth per blob size, and each function's cold start to its first response,
ours beside the naive baseline. Plain SVG, no plotting library (none is needed for bars).
"""

from __future__ import annotations

import argparse
import json
import sys
from html import escape
from pathlib import Path
from typing import Any

OURS, BASELINE = "#2b6cb0", "#c05621"
Bar = tuple[str, float, str]  # label, value, colour


def _panel(title: str, unit: str, bars: list[Bar], x: float, y: float, width: float, height: float) -> list[str]:
    top = max((value for _, value, _ in bars), default=0) or 1.0
    parts = [f'<text x="{x}" y="{y + 16}" font-size="15" font-weight="bold">{escape(title)}</text>']
    chart_top, chart_height = y + 34, height - 74
    slot = width / max(1, len(bars))
    for index, (label, value, colour) in enumerate(bars):
        bar_height = chart_height * value / top
        left = x + index * slot + slot * 0.15
        parts.append(f'<rect x="{left:.1f}" y="{chart_top + chart_height - bar_height:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{bar_height:.1f}" fill="{colour}"/>')
        parts.append(f'<text x="{left + slot * 0.35:.1f}" y="{chart_top + chart_height - bar_height - 4:.1f}" '
                     f'font-size="12" text-anchor="middle">{value:,.0f} {escape(unit)}</text>')
        parts.append(f'<text x="{left + slot * 0.35:.1f}" y="{chart_top + chart_height + 16:.1f}" font-size="11" '
                     f'text-anchor="middle">{escape(label)}</text>')
    parts.append(f'<line x1="{x}" y1="{chart_top + chart_height}" x2="{x + width}" y2="{chart_top + chart_height}" '
                 'stroke="#444"/>')
    return parts


def panels(results: dict[str, Any]) -> list[tuple[str, str, list[Bar]]]:
    """The charts' data from a results.json; a panel whose measurement is missing is left out."""
    found: list[tuple[str, str, list[Bar]]] = []
    scaling = (results.get("pipeline") or {}).get("scaling") or {}
    if scaling:
        found.append(("Pipeline records/s per worker process count", "rec/s",
                      [(f"{workers} worker{'s' if workers != '1' else ''}", float(run["records_per_second"]), OURS)
                       for workers, run in sorted(scaling.items(), key=lambda item: int(item[0]))]))
    memory = (results.get("pipeline") or {}).get("memory") or {}
    if memory:
        found.append(("Pipeline peak RSS growth per blob size", "MB",
                      [(f"{step} {size} MB", step_run["peak_growth_bytes"] / 1e6, OURS)
                       for size, run in sorted(memory.items(), key=lambda item: int(item[0]))
                       for step, step_run in sorted(run.items())]))
    first = results.get("first_response") or {}
    if first:
        names = {"http": "HttpGreeting", "etl": "BlobEtl", "cleanup": "CleanupTimer"}
        bars: list[Bar] = []
        for kind, entry in first.items():
            total = entry["median_total_ms"]
            bars += [(f"{names.get(kind, kind)} ours", float(total["ours"]), OURS),
                     (f"{names.get(kind, kind)} naive", float(total["baseline"]), BASELINE)]
        found.append(("Cold start to the first response (ours, naive)", "ms", bars))
    return found


def render(results: dict[str, Any]) -> str:
    drawn = panels(results)
    width, panel_height = 980, 300
    height = 60 + panel_height * len(drawn)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="20" y="30" font-size="18" font-weight="bold">make bench, {escape(str(results.get("mode")))} '
             f'run of {escape(str(results.get("date")))}</text>']
    for index, (title, unit, bars) in enumerate(drawn):
        parts += _panel(title, unit, bars, 20, 50 + index * panel_height, width - 40, panel_height)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_chart(results: dict[str, Any], path: Path) -> Path:
    path.write_text(render(results), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="?", default=Path(__file__).with_name("results.json"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = write_chart(json.loads(args.results.read_text(encoding="utf-8")), args.out or args.results.with_suffix(".svg"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
