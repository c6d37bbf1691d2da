"""What the event store raises: each one a kind of the app's error model (:mod:`common.errors`)."""

from __future__ import annotations

from common.errors import AppError, TransientFailure

__all__ = ["EventStoreError", "StoreUnavailable", "UnknownEventVersion", "WrongExpectedVersion"]


class EventStoreError(AppError):
    """Base of the store's own errors."""


class WrongExpectedVersion(EventStoreError):
    """Another writer appended to the stream first: the stream is past ``expected`` (at ``actual``,
    when known). Nothing of this append was written. An HTTP caller gets 412."""

    def __init__(self, stream_id: str, expected: int, actual: int | None = None) -> None:
        at = f" (it is at version {actual})" if actual is not None else ""
        super().__init__(f"Stream '{stream_id}' is no longer at version {expected}{at}.")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class StoreUnavailable(TransientFailure, EventStoreError):
    """Cosmos DB did not answer within the budget (throttled, unreachable, 5xx). For an append:
    nothing, or the whole append, was written, never a part; a retry with the same command id tells
    which."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UnknownEventVersion(EventStoreError):
    """An event's schema version is newer than this code knows (written by a newer deployment), or
    has no upcaster: the stream cannot be read here. An operator deploys the newer code."""
