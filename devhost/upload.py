"""Upload a file to the local ETL input container and print its summary when BlobEtl wrote it.

    .venv/bin/python -m devhost.upload samples/readings.json

Development only: uses the ``EtlStorage`` connection of local.settings.json (Azurite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from devhost.host import load_local_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


async def upload_and_wait(path: Path, values: dict[str, str], timeout: float) -> dict | None:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob.aio import BlobServiceClient

    incoming = values.get("ETL_INPUT_CONTAINER") or "incoming"
    summaries = values.get("ETL_SUMMARY_CONTAINER") or "summaries"
    async with BlobServiceClient.from_connection_string(values["EtlStorage"]) as service:
        summary_client = service.get_blob_client(summaries, f"{path.name}.summary.json")
        previous = None
        try:
            previous = (await summary_client.get_blob_properties()).etag
        except ResourceNotFoundError:
            pass
        await service.get_blob_client(incoming, path.name).upload_blob(path.read_bytes(), overwrite=True)
        print(f"uploaded {path} to {incoming}/{path.name}; waiting for {summaries}/{path.name}.summary.json")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                props = await summary_client.get_blob_properties()
                if props.etag != previous:
                    return json.loads(await (await summary_client.download_blob()).readall())
            except ResourceNotFoundError:
                pass
            await asyncio.sleep(0.5)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path)
    parser.add_argument("--settings", type=Path, default=PROJECT_ROOT / "local.settings.json")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    values = load_local_settings(args.settings)
    summary = asyncio.run(upload_and_wait(args.file, values, args.timeout))
    if summary is None:
        print("no summary yet: is 'make start' running?", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
