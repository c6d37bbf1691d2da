"""The event store: streams of events in one Cosmos DB container partitioned by ``/streamId``.

Documents (docs/orders.md has examples):

- an event: ``id`` = ``<streamId>:<version>``, ``kind`` = ``event``, ``type``, ``schemaVersion``,
  ``data``, ``metadata``, ``commandId``, ``recordedAt``. Because the id derives from the stream
  and the version, two writers that both append version N + 1 cannot both succeed: the second
  create is a 409 from Cosmos DB, which is :class:`WrongExpectedVersion` here.
- the stream's snapshot: ``id`` = ``<streamId>:snapshot``, ``kind`` = ``snapshot``, the folded
  ``state`` at ``version``, written in the same transactional batch as the event that reaches
  each multiple of ``snapshot_every``. Reads start from it and fold only the events after it.

An append of several events (and its snapshot) is one transactional batch in the stream's
partition: all of it is written or none. Each append carries a ``commandId``; when a retried
append meets its own earlier attempt (the first try landed but its answer was lost), the
conflict is recognised as success, not reported as a race.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from common.logs import describe_error
from common.retry import RetryPolicy, is_transient, retry_after_seconds, retry_async
from eventstore.errors import EventStoreError, StoreUnavailable, WrongExpectedVersion
from eventstore.upcasting import Upcasters

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy

__all__ = ["EventStore", "Loaded", "NewEvent", "Projection", "RecordedEvent", "event_id", "snapshot_id",
           "retrying", "store_policy"]

S = TypeVar("S")
T = TypeVar("T")
#: Cosmos DB refuses these characters in an id; a stream id is part of every event's id.
_FORBIDDEN_ID_CHARACTERS = frozenset("/\\?#")
MAX_STREAM_ID_LENGTH = 200
#: A transactional batch holds at most 100 operations (Cosmos DB service limits).
MAX_BATCH_OPERATIONS = 100
#: What a caller is told to wait when Cosmos DB named no time of its own.
DEFAULT_RETRY_AFTER_SECONDS = 2


def event_id(stream_id: str, version: int) -> str:
    return f"{stream_id}:{version}"


def snapshot_id(stream_id: str) -> str:
    return f"{stream_id}:snapshot"


def recorded_at(moment: datetime) -> str:
    """A fixed-width UTC timestamp (microseconds always present), so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def store_policy(budget_seconds: float) -> RetryPolicy:
    """One store operation (a read or an append) within ``budget_seconds``: short waits, since a
    caller is waiting; an attempt that hangs is abandoned after half the budget."""
    return RetryPolicy(max_attempts=4, base_delay=0.1, max_delay=1.0, total_budget=budget_seconds,
                       attempt_timeout=budget_seconds / 2)


@dataclass(frozen=True)
class NewEvent:
    """An event to append: its type, its data (JSON), and who caused it (``metadata``)."""

    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored, its data upcast to the type's current schema version."""

    stream_id: str
    version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: str
    command_id: str | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any], upcasters: Upcasters) -> RecordedEvent:
        event_type = str(document["type"])
        schema_version = int(document.get("schemaVersion", 1))
        data = upcasters.upcast(event_type, schema_version, dict(document.get("data") or {}))
        return cls(stream_id=str(document["streamId"]), version=int(document["version"]), type=event_type,
                   schema_version=upcasters.version_of(event_type), data=data,
                   metadata=dict(document.get("metadata") or {}), recorded_at=str(document["recordedAt"]),
                   command_id=document.get("commandId"))


class Projection(Protocol[S]):
    """How an aggregate's state folds from its events, and how it is kept in a snapshot.

    ``snapshot_schema`` versions the snapshot's shape: a snapshot of another schema is ignored and
    the stream folded from its start, so changing the fold never reads a stale shape.
    """

    snapshot_schema: int

    def initial(self) -> S: ...

    def apply(self, state: S, event: RecordedEvent) -> S: ...

    def to_snapshot(self, state: S) -> dict[str, Any]: ...

    def from_snapshot(self, data: dict[str, Any]) -> S: ...


@dataclass(frozen=True)
class Loaded[S]:
    """A stream folded up to ``version`` (0: no event), with what it cost."""

    state: S
    version: int
    #: The version of the snapshot the fold started from (0: from the start).
    snapshot_version: int = 0
    events_read: int = 0
    #: The time the event at ``version`` was recorded ("" for an empty stream).
    recorded_at: str = ""
    #: An append that found its own command already written (a retry): ``state`` is not the stored one.
    replayed: bool = False


def check_stream_id(stream_id: str) -> str:
    if (not stream_id or len(stream_id) > MAX_STREAM_ID_LENGTH or any(c in _FORBIDDEN_ID_CHARACTERS for c in stream_id)
            or not stream_id.isprintable()):
        raise ValueError(f"not a usable stream id: {stream_id[:60]!r}")
    return stream_id


class EventStore:
    """The store over one container (partition key path ``/streamId``).

    Every read and append retries throttling and transient faults under ``store_policy(budget)``
    and then raises :class:`StoreUnavailable`; a conflict is never retried.
    """

    def __init__(self, container: ContainerProxy, *, upcasters: Upcasters, snapshot_every: int = 0,
                 budget_seconds: float = 5.0, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.container = container
        self.upcasters = upcasters
        self.snapshot_every = snapshot_every
        self.policy = store_policy(budget_seconds)
        self.now = now

    # ---------------------------------------------------------------- reading

    async def load(self, stream_id: str, projection: Projection[S], *, up_to_version: int | None = None,
                   as_of: datetime | None = None) -> Loaded[S]:
        """The stream folded to its last event, or to ``up_to_version`` / the last event recorded at
        or before ``as_of``. A snapshot is used when it lies within that bound."""
        check_stream_id(stream_id)
        as_of_text = recorded_at(as_of) if as_of is not None else None
        state = projection.initial()
        version = 0
        snapshot_version = 0
        last_recorded = ""
        snapshot = await self._read_snapshot(stream_id)
        if (snapshot is not None and snapshot.get("schema") == projection.snapshot_schema
                and (up_to_version is None or int(snapshot["version"]) <= up_to_version)
                and (as_of_text is None or str(snapshot["eventRecordedAt"]) <= as_of_text)):
            state = projection.from_snapshot(dict(snapshot["state"]))
            version = snapshot_version = int(snapshot["version"])
            last_recorded = str(snapshot["eventRecordedAt"])
        events = await self._query_events(stream_id, after=version, up_to=up_to_version, as_of=as_of_text)
        for event in events:
            if event.version != version + 1:
                raise EventStoreError(f"Stream '{stream_id}' has a gap: version {event.version} follows {version}.")
            state = projection.apply(state, event)
            version = event.version
            last_recorded = event.recorded_at
        return Loaded(state, version, snapshot_version, len(events), last_recorded)

    async def events(self, stream_id: str, *, after: int = 0, limit: int = 100) -> list[RecordedEvent]:
        """Up to ``limit`` events after version ``after``, in order."""
        check_stream_id(stream_id)
        return await self._query_events(stream_id, after=after, up_to=after + limit)

    async def read_event(self, stream_id: str, version: int) -> RecordedEvent | None:
        document = await self._point_read(event_id(check_stream_id(stream_id), version), stream_id)
        return RecordedEvent.from_document(document, self.upcasters) if document is not None else None

    async def _read_snapshot(self, stream_id: str) -> dict[str, Any] | None:
        if self.snapshot_every <= 0:
            return None
        return await self._point_read(snapshot_id(stream_id), stream_id)

    async def _point_read(self, item_id: str, stream_id: str) -> dict[str, Any] | None:
        from azure.cosmos.exceptions import CosmosResourceNotFoundError

        async def read() -> dict[str, Any] | None:
            try:
                return dict(await self.container.read_item(item_id, partition_key=stream_id))
            except CosmosResourceNotFoundError:
                return None

        return await self._retrying(read, f"read {item_id}")

    async def _query_events(self, stream_id: str, *, after: int, up_to: int | None = None,
                            as_of: str | None = None) -> list[RecordedEvent]:
        query = "SELECT * FROM c WHERE c.streamId = @stream AND c.kind = 'event' AND c.version > @after"
        parameters: list[dict[str, Any]] = [{"name": "@stream", "value": stream_id}, {"name": "@after", "value": after}]
        if up_to is not None:
            query += " AND c.version <= @upTo"
            parameters.append({"name": "@upTo", "value": up_to})
        if as_of is not None:
            query += " AND c.recordedAt <= @asOf"
            parameters.append({"name": "@asOf", "value": as_of})
        query += " ORDER BY c.version"

        async def run() -> list[dict[str, Any]]:
            pages = self.container.query_items(query, parameters=parameters, partition_key=stream_id,
                                               max_item_count=1000)
            return [dict(document) async for document in pages]

        documents = await self._retrying(run, f"query {stream_id}")
        return [RecordedEvent.from_document(document, self.upcasters) for document in documents]

    # -------------------------------------------------------------- appending

    async def append(self, stream_id: str, events: Sequence[NewEvent], *, expected_version: int, command_id: str,
                     projection: Projection[S], state: S) -> Loaded[S]:
        """Append ``events`` after ``expected_version`` (0: a new stream), atomically.

        ``state`` is the stream's state at ``expected_version``; the new state is folded from it
        (and stored as the snapshot when the append reaches a multiple of ``snapshot_every``).
        Raises :class:`WrongExpectedVersion` when another writer appended first (nothing written),
        :class:`StoreUnavailable` when Cosmos DB did not answer within the budget.
        """
        check_stream_id(stream_id)
        if not events:
            raise ValueError("nothing to append")
        moment = recorded_at(self.now())
        documents: list[dict[str, Any]] = []
        recorded: list[RecordedEvent] = []
        for offset, new in enumerate(events, start=1):
            version = expected_version + offset
            schema_version = self.upcasters.version_of(new.type)
            document = {"id": event_id(stream_id, version), "streamId": stream_id, "kind": "event",
                        "version": version, "type": new.type, "schemaVersion": schema_version, "data": new.data,
                        "metadata": new.metadata, "commandId": command_id, "recordedAt": moment}
            documents.append(document)
            recorded.append(RecordedEvent(stream_id, version, new.type, schema_version, new.data, new.metadata, moment,
                                          command_id))
        for event in recorded:
            state = projection.apply(state, event)
        final = expected_version + len(events)
        operations: list[tuple[str, tuple[Any, ...]]] = [("create", (document,)) for document in documents]
        snapshot_version = 0
        if self.snapshot_every > 0 and final // self.snapshot_every > expected_version // self.snapshot_every:
            operations.append(("upsert", ({"id": snapshot_id(stream_id), "streamId": stream_id, "kind": "snapshot",
                                           "schema": projection.snapshot_schema, "version": final,
                                           "eventRecordedAt": moment, "state": projection.to_snapshot(state)},)))
            snapshot_version = final
        if len(operations) > MAX_BATCH_OPERATIONS:
            raise ValueError(f"one append holds at most {MAX_BATCH_OPERATIONS - 1} events")
        replayed = await self._write(stream_id, operations, expected_version=expected_version, command_id=command_id)
        return Loaded(state, final, snapshot_version, len(events), moment, replayed=replayed)

    async def _write(self, stream_id: str, operations: list[tuple[str, tuple[Any, ...]]], *, expected_version: int,
                     command_id: str) -> bool:
        """Write the append; True when it had been written already, by this command."""
        from azure.cosmos.exceptions import CosmosBatchOperationError, CosmosResourceExistsError

        async def write() -> bool:
            try:
                if len(operations) == 1:
                    await self.container.create_item(operations[0][1][0])
                else:
                    await self.container.execute_item_batch(operations, partition_key=stream_id)
                return True
            except CosmosResourceExistsError:
                return False
            except CosmosBatchOperationError as exc:
                if exc.status_code == 409:
                    return False
                raise

        if await self._retrying(write, f"append to {stream_id}"):
            return False
        # Version expected + 1 exists. Ours, from an attempt whose answer was lost (or a retry of the
        # same command by the client)? Then it is done.
        first = await self._point_read(event_id(stream_id, expected_version + 1), stream_id)
        if first is not None and first.get("commandId") == command_id:
            return True
        raise WrongExpectedVersion(stream_id, expected_version)

    async def _retrying(self, work: Callable[[], Awaitable[T]], what: str) -> T:
        return await retrying(work, self.policy, what)


async def retrying(work: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
    """``work()`` retried on throttling and transient faults under ``policy``; then
    :class:`StoreUnavailable` (with the wait Cosmos DB asked for, when it did)."""
    try:
        return await retry_async(work, policy)
    except Exception as exc:
        if is_transient(exc):
            asked = retry_after_seconds(exc)
            wait = DEFAULT_RETRY_AFTER_SECONDS if asked is None else max(1, min(60, math.ceil(asked)))
            raise StoreUnavailable(f"Cosmos DB did not complete '{what}': {describe_error(exc)}", wait) from None
        raise
