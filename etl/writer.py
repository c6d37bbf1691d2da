"""The Cosmos DB writer: validate, transform and upsert records with adaptive concurrency.

Records sharing an item key within one blob land in blob order (waves), so the last one stays
and the earlier ones count as ``superseded``: ``totalRecords == written + invalid + superseded``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

from common import telemetry
from common.cosmos import PartitionKeyPath, RequestCharge, partition_key_of
from common.errors import ConfigurationError
from common.logs import InvocationLog, describe_error
from common.retry import cosmos_write_policy, retry_async
from common.settings import EtlSettings
from common.throttle import AdaptiveConcurrency, ThrottleSignal
from common.timing import utc_timestamp

from .blobs import BlobRef
from .records import InvalidRecord, RawRecord, to_item, validate_record
from .summary import EtlSummary

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy

#: Cosmos answers these for one item that can never be written as it is.
#: 400 (malformed for Cosmos), 409 (a unique key constraint), 413 (too large).
RECORD_REJECTED_STATUS = frozenset({400, 409, 413})


async def _all_or_cancel(operations: list[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; when one fails, cancel the rest before raising, so no write of a failed
    invocation goes on behind the host's retry of the same blob."""
    tasks = [asyncio.ensure_future(operation) for operation in operations]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _batched(records: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    while batch := list(islice(records, size)):
        yield batch


#: A record ready to write: the raw record, its item, and the item's key (id and partition key value).
Ready = tuple[RawRecord, dict[str, Any], int]


def item_key(item_id: str, partition_value: Any) -> int:
    """A 128-bit digest of the item's identity in the container (id and partition key value).

    Kept per blob to tell a superseded record from a new one: 16 bytes of digest instead of the
    id itself (up to 255 characters), with a collision chance near 2**-128 per pair.
    """
    text = json.dumps([item_id, partition_value], default=str, ensure_ascii=False)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest())


def _waves(items: list[Ready]) -> list[list[Ready]]:
    """Split a batch so that no wave holds one item key twice; waves run in order, so the
    record that comes last in the blob is the one that stays."""
    waves: list[list[Ready]] = []
    seen: dict[int, int] = {}
    for entry in items:
        key = entry[2]
        wave = seen.get(key, -1) + 1
        seen[key] = wave
        if wave == len(waves):
            waves.append([])
        waves[wave].append(entry)
    return waves


class EtlRun:
    """One blob's run: owns the counters; the clients and settings come from the caller."""

    def __init__(self, source: BlobRef, container: ContainerProxy, cfg: EtlSettings, log: InvocationLog,
                 now: Callable[[], datetime], throttle: ThrottleSignal | None = None) -> None:
        self.source = source
        self.container = container
        self.log = log
        self.summary = EtlSummary(source_blob=str(source), started_at=utc_timestamp(now()))
        self.policy = cosmos_write_policy(cfg.write_budget_seconds)
        #: Writes in flight: at most ETL_WRITE_CONCURRENCY, fewer while Cosmos DB throttles.
        self.in_flight = AdaptiveConcurrency(cfg.write_concurrency, throttle)
        self.charge = RequestCharge()
        #: Item key -> index of the record whose write landed last under that key, in this blob.
        self._landed: dict[int, int] = {}

    async def _upsert(self, record: RawRecord, item: dict[str, Any], key: int) -> None:
        from azure.cosmos.exceptions import CosmosHttpResponseError

        async def attempt() -> None:
            async with self.in_flight:  # held for the attempt, not for a retry's wait
                await self.container.upsert_item(item, response_hook=self.charge)

        try:
            await retry_async(
                attempt,
                self.policy,
                on_retry=lambda n, delay, exc: self.log.warning(
                    "etl.write_retry", attempt=n, delayS=round(delay, 3), error=describe_error(exc)),
            )
        except CosmosHttpResponseError as exc:
            if exc.status_code in RECORD_REJECTED_STATUS:
                self.summary.add_error(record.index, item["id"], f"rejected by Cosmos DB ({exc.status_code})",
                                       record.line)
                return
            raise
        earlier = self._landed.get(key)
        self._landed[key] = record.index
        if earlier is None:
            self.summary.written += 1
        else:  # waves keep blob order per key, so the earlier record's write finished first
            self.summary.add_superseded(earlier, item["id"], record.index)

    async def write_batch(self, batch: list[RawRecord], key: PartitionKeyPath, timestamp: str) -> None:
        ready: list[Ready] = []
        for record in batch:
            self.summary.total_records += 1
            if record.error is not None:
                self.summary.add_error(record.index, None, record.error, record.line)
                continue
            value = record.value
            candidate_id = value.get("id") if isinstance(value, dict) else None
            try:
                item = to_item(validate_record(value), str(self.source), timestamp)
                partition_value = key.value_of(item)
            except InvalidRecord as exc:
                self.summary.add_error(record.index, candidate_id, str(exc), record.line)
                continue
            self.summary.note_values(item["metadata"]["type"], item["metadata"]["source"])
            ready.append((record, item, item_key(item["id"], partition_value)))
        for wave in _waves(ready):
            await _all_or_cancel([self._upsert(record, item, key) for record, item, key in wave])



async def item_partition_key(container: ContainerProxy) -> PartitionKeyPath:
    """The container's partition key; :class:`ConfigurationError` naming ``COSMOS_CONTAINER`` when
    BlobEtl's items cannot fill it."""
    key = await partition_key_of(container)
    if not _key_resolves(key):
        raise ConfigurationError(
            "COSMOS_CONTAINER",
            f"names a container whose partition key {list(key.paths)} is not a path of BlobEtl items "
            "(use /id, /metadata/source, /metadata/type or /sourceBlob)",
        )
    return key


async def write_records(run: EtlRun, records: Iterator[RawRecord], key: PartitionKeyPath, timestamp: str,
                        batch_size: int, *, before_batch: Callable[[], Awaitable[bool]] | None = None) -> bool:
    """Validate, transform and upsert ``records`` ``batch_size`` at a time into ``run``'s counters.

    ``before_batch`` is awaited before every batch but the first; when it answers False the run
    stops there (a fanned-out segment whose blob changed) and this returns False.
    """
    batches = _batched(records, batch_size)
    summary = run.summary
    number = -1
    # Splitting and parsing are CPU work: each batch is read off the event loop, so one record
    # full of brackets cannot stall every other invocation of the worker.
    while (batch := await asyncio.to_thread(next, batches, None)) is not None:
        number += 1
        if number and before_batch is not None and not await before_batch():
            return False
        written, invalid = summary.written, summary.invalid
        with telemetry.span("etl.batch", attributes={"app.etl.batch.number": number}) as batch_span:
            await run.write_batch(batch, key, timestamp)
            batch_span.set_attributes({"app.etl.batch.records": len(batch),
                                       "app.etl.batch.written": summary.written - written,
                                       "app.etl.batch.invalid": summary.invalid - invalid})
        await asyncio.sleep(0)  # let other invocations run between batches
    return True



_ITEM_SHAPE = {"id": "", "processedData": "", "timestamp": "", "sourceBlob": "", "metadata": {"source": "", "type": ""}}


def _key_resolves(key: PartitionKeyPath) -> bool:
    try:
        key.value_of(_ITEM_SHAPE)
    except KeyError:
        return False
    return True
