"""The data pipeline: a BlobCreated event, inline or fanned out over a Storage queue, and the fan-in.

Used by BlobEtl (:func:`handle_blob_created`), BlobEtlWorker (:func:`handle_work`), the
development host and the benchmark. docs/pipeline.md describes the design::

    created = parse_blob_created(event_type, subject, data)
    await handle_blob_created(created, cfg=cfg, log=log, blob_service=..., queue=..., container=...)

No module here imports an Azure SDK at its top.
"""

from etl.blobs import BlobChanged, BlobRef, BlobVersion, read_version, same_etag
from etl.events import BLOB_CREATED, BlobCreated, handle_blob_created, parse_blob_created
from etl.fanout import fan_in, handle_work, record_failure, split_blob, start_fan_out
from etl.inline import process_blob, run_etl
from etl.messages import SegmentWork, SplitWork, Work, encode_work, parse_work
from etl.records import to_item
from etl.runs import RUNS_PREFIX, RunStore, run_store
from etl.splitting import Segment
from etl.summary import EtlSummary, summary_blob_name

__all__ = [
    "BLOB_CREATED",
    "RUNS_PREFIX",
    "BlobChanged",
    "BlobCreated",
    "BlobRef",
    "BlobVersion",
    "EtlSummary",
    "RunStore",
    "Segment",
    "SegmentWork",
    "SplitWork",
    "Work",
    "encode_work",
    "fan_in",
    "handle_blob_created",
    "handle_work",
    "parse_blob_created",
    "parse_work",
    "process_blob",
    "read_version",
    "record_failure",
    "run_etl",
    "run_store",
    "same_etag",
    "split_blob",
    "start_fan_out",
    "summary_blob_name",
    "to_item",
]
