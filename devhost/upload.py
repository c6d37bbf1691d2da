"""Upload a file to the local ETL input container and print its summary when BlobEtl wrote it.

    .venv/bin/python -m devhost.upload samples/readings.json
    .venv/bin/python -m devhost.upload --notify samples/readings.json    # with `func start`
    .venv/bin/python -m devhost.upload --timeout 900 big.jsonl           # a large blob

Development only: uses the ``EtlStorage`` connection of local.settings.json (Azurite).
``make start``'s development host sees the new blob itself (it stands in for Event Grid);
with Core Tools nothing does, so ``--notify`` posts the blob's ``BlobCreated`` event to the
local Event Grid webhook (``<--host>/runtime/webhooks/eventgrid?functionName=BlobEtl``), as
Event Grid would in Azure.

It waits for the summary of the version it uploaded (the summary's ``sourceetag``), not any
summary of that name, and prints the run's progress meanwhile (a fanned-out blob's segments
done of its total). After ``--timeout`` seconds (default 300) it says how far the run got.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from devhost.host import DevHostError, load_local_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.5


class UploadError(Exception):
    """What the user is told when the upload cannot be done or its summary never comes."""


async def notify(base_url: str, container: str, name: str, etag: str, size: int) -> None:
    """POST the blob's BlobCreated event to the local Event Grid webhook, as Event Grid delivers it."""
    import aiohttp

    from devhost.runtime_host import blob_created_event

    event = blob_created_event(container, name, etag=etag, content_length=size)
    url = f"{base_url.rstrip('/')}/runtime/webhooks/eventgrid?functionName=BlobEtl"
    try:
        async with aiohttp.ClientSession() as session, session.post(
                url, json=[event], headers={"aeg-event-type": "Notification"}) as response:
            print(f"posted the BlobCreated event to {url}: {response.status}", flush=True)
    except aiohttp.ClientError as exc:
        raise UploadError(f"cannot post the BlobCreated event to {url} ({type(exc).__name__}): is 'func start' "
                          "running there? (--host names another address)") from None


def _same_etag(left: str | None, right: str | None) -> bool:
    return left is not None and right is not None and left.strip('"') == right.strip('"')


async def _progress(service: Any, summaries: str, incoming: str, name: str, etag: str) -> str | None:
    """How far a fanned-out run of this version got ("segments 3 of 41 done"), or None (inline, or not split yet)."""
    from azure.core.exceptions import ResourceNotFoundError

    from etl import RUNS_PREFIX, BlobVersion

    prefix = f"{RUNS_PREFIX}/{BlobVersion(incoming, name, etag, 0).token}/"
    try:
        manifest = json.loads(await (await service.get_blob_client(summaries, prefix + "manifest.json")
                                     .download_blob()).readall())
    except ResourceNotFoundError:
        return None
    total = len(manifest.get("segments", []))
    done = 0
    async for _ in service.get_container_client(summaries).list_blob_names(name_starts_with=prefix + "segment-"):
        done += 1
    return f"fanned out: {done} of {total} segments done"


async def upload_and_wait(path: Path, values: dict[str, str], timeout: float,
                          notify_url: str | None = None) -> dict[str, Any]:
    """Upload ``path``, then wait for the summary of that version; :class:`UploadError` saying why not."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError
    from azure.storage.blob.aio import BlobServiceClient

    if "EtlStorage" not in values:
        raise UploadError("local settings have no 'EtlStorage': run 'make start' once (it writes them)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UploadError(f"cannot read {path}: {exc.strerror or exc}") from None
    incoming = values.get("ETL_INPUT_CONTAINER") or "incoming"
    summaries = values.get("ETL_SUMMARY_CONTAINER") or "summaries"
    started = time.monotonic()
    async with BlobServiceClient.from_connection_string(values["EtlStorage"], retry_total=0) as service:
        try:
            uploaded = await service.get_blob_client(incoming, path.name).upload_blob(data, overwrite=True)
        except AzureError as exc:
            raise UploadError(f"cannot upload to Azurite ({type(exc).__name__}): is 'make start' running? "
                              "(it starts the emulators)") from None
        etag = str(uploaded["etag"])
        print(f"uploaded {path} ({len(data)} bytes) to {incoming}/{path.name}; waiting for the summary of this "
              f"version in {summaries}/{path.name}.summary.json (up to {timeout:g} s)", flush=True)
        if notify_url:
            await notify(notify_url, incoming, path.name, etag, len(data))
        summary_client = service.get_blob_client(summaries, f"{path.name}.summary.json")
        said = None
        while time.monotonic() - started < timeout:
            try:
                props = await summary_client.get_blob_properties()
                if _same_etag((props.metadata or {}).get("sourceetag"), etag):
                    return dict(json.loads(await (await summary_client.download_blob()).readall()))
            except ResourceNotFoundError:
                pass
            except AzureError:
                pass  # Azurite busy or restarting: keep waiting until the timeout
            try:
                progress = await _progress(service, summaries, incoming, path.name, etag)
            except AzureError:
                progress = None
            if progress is not None and progress != said:
                print(f"  {progress} ({time.monotonic() - started:.0f} s)", flush=True)
                said = progress
            await asyncio.sleep(POLL_SECONDS)
    raise UploadError(f"no summary of this version after {timeout:g} s ({said or 'no progress seen'}): the run may "
                      "still be going (--timeout waits longer); is 'make start' (or 'func start' with --notify) running?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.upload", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="the JSON or JSON Lines file to upload")
    parser.add_argument("--settings", type=Path, default=PROJECT_ROOT / "local.settings.json")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                        help=f"seconds to wait for the summary (default {DEFAULT_TIMEOUT_SECONDS:g})")
    parser.add_argument("--notify", action="store_true",
                        help="post the BlobCreated event to the local Event Grid webhook (with 'func start')")
    parser.add_argument("--host", default="http://localhost:7071", metavar="URL",
                        help="where --notify posts (default http://localhost:7071)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be more than 0 seconds")
    try:
        values = load_local_settings(args.settings)
        summary = asyncio.run(upload_and_wait(args.file, values, args.timeout, args.host if args.notify else None))
    except (UploadError, DevHostError) as exc:
        print(f"devhost.upload: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
