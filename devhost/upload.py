"""Upload a file to the local ETL input container and print its summary when BlobEtl wrote it.

    .venv/bin/python -m devhost.upload samples/readings.json
    .venv/bin/python -m devhost.upload --notify samples/readings.json    # with `func start`

Development only: uses the ``EtlStorage`` connection of local.settings.json (Azurite).
``make start``'s development host sees the new blob itself (it stands in for Event Grid);
with Core Tools nothing does, so ``--notify`` posts the blob's ``BlobCreated`` event to the
local Event Grid webhook (``/runtime/webhooks/eventgrid?functionName=BlobEtl``), as Event
Grid would in Azure.
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


async def notify(base_url: str, container: str, name: str, etag: str, size: int) -> None:
    """POST the blob's BlobCreated event to the local Event Grid webhook, as Event Grid delivers it."""
    import aiohttp

    from devhost.runtime_host import blob_created_event

    event = blob_created_event(container, name, etag=etag, content_length=size)
    url = f"{base_url.rstrip('/')}/runtime/webhooks/eventgrid?functionName=BlobEtl"
    async with aiohttp.ClientSession() as session, session.post(
            url, json=[event], headers={"aeg-event-type": "Notification"}) as response:
        print(f"posted the BlobCreated event to {url}: {response.status}")


async def upload_and_wait(path: Path, values: dict[str, str], timeout: float,
                          notify_url: str | None = None) -> dict | None:
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
        data = path.read_bytes()
        uploaded = await service.get_blob_client(incoming, path.name).upload_blob(data, overwrite=True)
        print(f"uploaded {path} to {incoming}/{path.name}; waiting for {summaries}/{path.name}.summary.json")
        if notify_url:
            await notify(notify_url, incoming, path.name, uploaded["etag"], len(data))
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
    parser.add_argument("--notify", nargs="?", const="http://localhost:7071", default=None, metavar="URL",
                        help="post the BlobCreated event to the local Event Grid webhook (func start; "
                             "default http://localhost:7071)")
    args = parser.parse_args()
    values = load_local_settings(args.settings)
    summary = asyncio.run(upload_and_wait(args.file, values, args.timeout, args.notify))
    if summary is None:
        print("no summary yet: is 'make start' running?", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
