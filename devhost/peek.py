"""Look at the local data: what the app wrote to the emulators ``make start`` runs.

    .venv/bin/python -m devhost.peek cosmos     # COSMOS_CONTAINER: how many items, the latest ones
    .venv/bin/python -m devhost.peek blobs      # the input and summary containers (runs under _runs/ counted)
    .venv/bin/python -m devhost.peek queue      # ETL_WORK_QUEUE and its poison queue

Reads local.settings.json's connections (Azurite, the Cosmos DB API server). Development only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from devhost.host import DevHostError, load_local_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


async def peek_cosmos(values: dict[str, str], limit: int) -> list[str]:
    from azure.cosmos.aio import CosmosClient

    database, container = values.get("COSMOS_DATABASE") or "serverless", values.get("COSMOS_CONTAINER") or "records"
    async with CosmosClient.from_connection_string(values["CosmosConnection"], connection_verify=False,
                                                   enable_endpoint_discovery=False, retry_total=0) as client:
        items = client.get_database_client(database).get_container_client(container)
        count = [n async for n in items.query_items("SELECT VALUE COUNT(1) FROM c")]
        latest = [item async for item in items.query_items(
            f"SELECT TOP {int(limit)} c.id, c.timestamp, c.metadata FROM c ORDER BY c.timestamp DESC")]
    lines = [f"{database}/{container}: {count[0] if count else 0} items; the latest {len(latest)}:"]
    lines += [f"  {item.get('timestamp')}  {item.get('id')}  {json.dumps(item.get('metadata'))}" for item in latest]
    return lines


async def peek_blobs(values: dict[str, str], limit: int) -> list[str]:
    from azure.storage.blob.aio import BlobServiceClient

    lines = []
    async with BlobServiceClient.from_connection_string(values["EtlStorage"], retry_total=0) as service:
        for name in (values.get("ETL_INPUT_CONTAINER") or "incoming", values.get("ETL_SUMMARY_CONTAINER") or "summaries"):
            blobs: list[Any] = []
            runs = 0
            async for blob in service.get_container_client(name).list_blobs():
                if blob.name.startswith("_runs/"):
                    runs += 1
                else:
                    blobs.append(blob)
            blobs.sort(key=lambda blob: blob.last_modified, reverse=True)
            extra = f", and {runs} files of fanned-out runs under _runs/" if runs else ""
            lines.append(f"{name}: {len(blobs)} blobs{extra}; the latest {min(limit, len(blobs))}:")
            lines += [f"  {blob.last_modified:%Y-%m-%d %H:%M:%S}  {blob.size:>12,} B  {blob.name}" for blob in blobs[:limit]]
    return lines


async def peek_queue(values: dict[str, str], limit: int) -> list[str]:
    from azure.storage.queue.aio import QueueServiceClient

    lines = []
    work = values.get("ETL_WORK_QUEUE") or "etl-work"
    async with QueueServiceClient.from_connection_string(values["EtlStorage"], retry_total=0) as service:
        for name in (work, f"{work}-poison"):
            queue = service.get_queue_client(name)
            try:
                properties = await queue.get_queue_properties()
            except Exception:  # noqa: BLE001 - a queue that does not exist yet is shown as such
                lines.append(f"{name}: does not exist yet")
                continue
            lines.append(f"{name}: about {properties.approximate_message_count} messages; the first {limit}:")
            for message in await queue.peek_messages(max_messages=min(32, limit)):
                text = message.content if isinstance(message.content, str) else str(message.content)
                lines.append(f"  dequeued {message.dequeue_count}x  {text[:160]}")
    return lines


PEEKS = {"cosmos": peek_cosmos, "blobs": peek_blobs, "queue": peek_queue}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.peek", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=sorted(PEEKS))
    parser.add_argument("--limit", type=int, default=10, help="how many of the latest to list (default 10)")
    parser.add_argument("--settings", type=Path, default=PROJECT_ROOT / "local.settings.json")
    args = parser.parse_args(argv)
    try:
        values = load_local_settings(args.settings)
        lines = asyncio.run(PEEKS[args.what](values, max(1, args.limit)))
    except DevHostError as exc:
        print(f"devhost.peek: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the emulators down is one sentence, not a traceback
        print(f"devhost.peek: cannot read the local {args.what} ({type(exc).__name__}): is 'make start' running?",
              file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
