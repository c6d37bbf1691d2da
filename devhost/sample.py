"""Write a JSON Lines sample large enough to fan out, with a share of invalid records to find.

    .venv/bin/python -m devhost.sample --records 200000 --invalid 0.2%
    .venv/bin/python -m devhost.upload samples/generated-200000.jsonl

The blob is over ``ETL_INLINE_MAX_BYTES`` (1 MB locally) from about 13,000 records, so BlobEtl hands
it to BlobEtlWorker in segments of ``ETL_SEGMENT_RECORDS``. Invalid records (a line that is not
JSON, a record without ``source``) sit at seeded random positions; the command prints how many
of each to expect in the summary. Development only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def parse_share(text: str) -> float:
    """``0.2%`` or ``0.002``: the share of invalid records, from 0 to 1."""
    value = text.strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share such as 0.2% or 0.002") from None
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0% and 100%")
    return share


def write_sample(path: Path, records: int, invalid_share: float, seed: int = 7) -> dict[str, int]:
    """Write ``records`` lines to ``path``; the counts a summary of it must show."""
    chooser = random.Random(seed)
    invalid = set(chooser.sample(range(records), round(records * invalid_share)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for index in range(records):
            if index in invalid:
                out.write("{not json\n" if index % 2 else json.dumps({"id": f"r{index}", "data": "x", "type": "t"}) + "\n")
            else:
                out.write(json.dumps({"id": f"r{index}", "data": f"reading {index}", "source": f"sensor-{index % 50}",
                                      "type": "reading"}) + "\n")
    return {"records": records, "valid": records - len(invalid), "invalid": len(invalid), "bytes": path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000, help="how many records (default 200000)")
    parser.add_argument("--invalid", type=parse_share, default=parse_share("0.2%"),
                        help="the share of invalid records, e.g. 0.2%% (default) or 0.002")
    parser.add_argument("--out", type=Path, help="where to write (default samples/generated-<records>.jsonl)")
    parser.add_argument("--seed", type=int, default=7, help="positions of the invalid records (default 7)")
    args = parser.parse_args(argv)
    if args.records < 1:
        parser.error("--records must be at least 1")
    out = args.out or PROJECT_ROOT / "samples" / f"generated-{args.records}.jsonl"
    counts = write_sample(out, args.records, args.invalid, args.seed)
    print(f"wrote {out} ({counts['bytes']:,} bytes): {counts['records']:,} records, {counts['valid']:,} valid and "
          f"{counts['invalid']:,} invalid; its summary should say written {counts['valid']}, invalid {counts['invalid']}")
    print(f"next: .venv/bin/python -m devhost.upload {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
