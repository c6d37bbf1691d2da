"""Idempotency-Key (the IETF httpapi draft) for creating orders: one key, one order, per tenant.

A key is remembered as a record in its own container (partition key ``/id``, Cosmos DB's time
to live removes it): ``id`` = SHA-256 of the tenant and the key, the order id it stands for, and a
fingerprint of the request. :meth:`IdempotencyKeys.claim` is safe under any number of concurrent
or repeated requests: the first create of the record wins, every other request reads it and gets
the same order id, or 422 if it carries another body. An expired record is replaced (with its
ETag as the condition), so the key then starts a new order::

    order_id = await keys.claim(tenant_id, key, fingerprint)
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from common.problems import Problem
from eventstore.store import retrying, store_policy

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy

__all__ = ["IdempotencyKeys", "KeyReused", "check_key", "record_id"]

#: Visible ASCII, as a header token may hold; long enough for a UUID or a hash.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


class KeyReused(Problem):
    def __init__(self) -> None:
        super().__init__(422, "idempotency-key-reused", "This Idempotency-Key was used with a different request body; "
                         "use a new key for a new order.", reason="idempotency_key_reused")


def check_key(value: str) -> str:
    if not _KEY.fullmatch(value):
        raise Problem(400, "bad-idempotency-key", "Idempotency-Key must be 1 to 255 visible ASCII characters.",
                      reason="bad_idempotency_key")
    return value


def record_id(tenant_id: str, key: str) -> str:
    return hashlib.sha256(f"{tenant_id}\n{key}".encode()).hexdigest()


class IdempotencyKeys:
    def __init__(self, container: ContainerProxy, *, ttl_hours: float, budget_seconds: float,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.container = container
        self.ttl = timedelta(hours=ttl_hours)
        self.policy = store_policy(budget_seconds)
        self.now = now

    async def claim(self, tenant_id: str, key: str, fingerprint: str) -> str:
        """The order id of this key in this tenant (a new one for a key not seen, or expired).

        Raises :class:`KeyReused` (422) when the key was claimed with another fingerprint.
        """
        from azure.core import MatchConditions
        from azure.cosmos.exceptions import (
            CosmosAccessConditionFailedError,
            CosmosResourceExistsError,
            CosmosResourceNotFoundError,
        )

        item_id = record_id(tenant_id, check_key(key))
        for _ in range(3):
            now = self.now()
            record: dict[str, Any] = {"id": item_id, "orderId": str(uuid.uuid4()), "fingerprint": fingerprint,
                                      "createdAt": now.isoformat(), "expiresAt": (now + self.ttl).timestamp(),
                                      "ttl": max(1, int(self.ttl.total_seconds()))}
            try:
                await retrying(functools.partial(self.container.create_item, record), self.policy, "claim idempotency key")
                return str(record["orderId"])
            except CosmosResourceExistsError:
                pass
            try:
                existing = await retrying(functools.partial(self.container.read_item, item_id, partition_key=item_id),
                                          self.policy, "read idempotency key")
            except CosmosResourceNotFoundError:
                continue  # expired and removed in between: claim it afresh
            if float(existing.get("expiresAt", 0)) > now.timestamp():
                if existing.get("fingerprint") != fingerprint:
                    raise KeyReused()
                return str(existing["orderId"])
            try:
                await retrying(functools.partial(self.container.replace_item, item_id, record, etag=existing["_etag"],
                                                 match_condition=MatchConditions.IfNotModified),
                               self.policy, "renew idempotency key")
                return str(record["orderId"])
            except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                continue  # another request renewed (or TTL removed) it first: read again
        raise Problem(409, "idempotency-key-contended", "Too many requests raced for this Idempotency-Key; retry.",
                      reason="idempotency_key_reused")
