"""An append-only event store on one Cosmos DB container: a stream per aggregate, optimistic
concurrency by the event's id, atomic appends, snapshots and upcasting.

Not tied to orders: any aggregate with a :class:`Projection` (how its state folds) can use it::

    from eventstore import EventStore, NewEvent

    store = EventStore(container, upcasters=UPCASTERS, snapshot_every=50, budget_seconds=10)
    loaded = await store.load("order-42", ORDER_PROJECTION)           # state, version
    await store.append("order-42", [NewEvent("OrderSubmitted", {...}, metadata)],
                       expected_version=loaded.version, command_id=request_id,
                       snapshot_of=lambda version: ...)                 # WrongExpectedVersion on a race

docs/orders.md describes the documents and why each write is safe to retry.
"""

from eventstore.errors import EventStoreError, StoreUnavailable, UnknownEventVersion, WrongExpectedVersion
from eventstore.store import EventStore, Loaded, NewEvent, Projection, RecordedEvent, event_id, snapshot_id
from eventstore.upcasting import Upcasters

__all__ = [
    "EventStore",
    "EventStoreError",
    "Loaded",
    "NewEvent",
    "Projection",
    "RecordedEvent",
    "StoreUnavailable",
    "UnknownEventVersion",
    "Upcasters",
    "WrongExpectedVersion",
    "event_id",
    "snapshot_id",
]
