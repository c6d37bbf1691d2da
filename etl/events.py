"""BlobEtl's trigger: a ``Microsoft.Storage.BlobCreated`` event, which names the blob but holds none of it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from common.errors import InvalidInput
from common.logs import InvocationLog
from common.settings import EtlSettings
from common.throttle import ThrottleSignal

from .blobs import BlobRef, download_version, read_version, same_etag
from .fanout import start_fan_out
from .inline import process_blob

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy
    from azure.storage.blob.aio import BlobServiceClient
    from azure.storage.queue.aio import QueueClient

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
_SUBJECT = re.compile(r"/blobServices/default/containers/(?P<container>[^/]+)/blobs/(?P<name>.+)", re.DOTALL)

Outcome = Literal["ignored", "gone", "stale", "inline", "fan-out"]


@dataclass(frozen=True)
class BlobCreated:
    blob: BlobRef
    #: The version the event is about (unquoted, as Event Grid sends it), when the event says.
    etag: str | None
    content_length: int | None


def parse_blob_created(event_type: str | None, subject: str | None, data: Any) -> BlobCreated | None:
    """The blob a BlobCreated event (Event Grid or CloudEvents schema) names; None for another
    event type; :class:`InvalidInput` (``bad_event``) for a BlobCreated event that names no blob."""
    if event_type != BLOB_CREATED:
        return None
    data = data if isinstance(data, Mapping) else {}
    match = _SUBJECT.fullmatch(subject or "")
    if match is not None:
        blob = BlobRef(match["container"], match["name"])
    else:  # the subject is the documented form; the blob's URL is the fallback
        path = unquote(urlsplit(str(data.get("url") or "")).path).lstrip("/")
        container, _, name = path.partition("/")
        if not container or not name:
            raise InvalidInput(f"BlobCreated event names no blob (subject {str(subject)[:200]!r}, no data.url)",
                               reason="bad_event")
        blob = BlobRef(container, name)
    etag = data.get("eTag")
    length = data.get("contentLength")
    return BlobCreated(blob, etag if isinstance(etag, str) and etag else None,
                       length if isinstance(length, int) and not isinstance(length, bool) else None)


async def handle_blob_created(event: BlobCreated, *, cfg: EtlSettings, log: InvocationLog,
                              blob_service: BlobServiceClient, queue: Callable[[], QueueClient],
                              container: Callable[[], ContainerProxy],
                              throttle: ThrottleSignal | None = None) -> Outcome:
    """Process the blob of one BlobCreated event: inline when small, else start its fan-out.

    An event for another container, for a blob since deleted, or for a version that has
    since been overwritten (its newer version has its own event) completes with a log line.
    """
    blob = event.blob
    if blob.container != cfg.input_container:
        log.warning("etl.event_ignored", blob=str(blob),
                    detail=f"not in ETL_INPUT_CONTAINER '{cfg.input_container}' (check the subscription's filter)")
        return "ignored"
    version = await read_version(blob_service, blob)
    if version is None:
        log.info("etl.blob_gone", blob=str(blob), detail="deleted before it was processed")
        return "gone"
    if event.etag is not None and not same_etag(event.etag, version.etag):
        log.info("etl.event_stale", blob=str(blob), eventETag=event.etag, currentETag=version.etag,
                 detail="the blob was overwritten since; the newer version's event processes it")
        return "stale"
    if version.size > cfg.inline_max_bytes:
        await start_fan_out(version, queue=queue(), log=log)
        return "fan-out"
    data = await download_version(blob_service, version)
    if data is None:
        log.info("etl.event_stale", blob=str(blob), currentETag=version.etag, detail="overwritten while read")
        return "stale"
    await process_blob(data, source_blob=str(blob), cfg=cfg, log=log, container=container(),
                       blob_service=blob_service, throttle=throttle, source_etag=version.etag)
    return "inline"
