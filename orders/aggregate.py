"""The order aggregate: its events, how they fold into an order, and what each command decides.

Events (``data`` as stored; docs/orders.md has examples):

- ``OrderCreated`` v2: ``orderId``, ``tenantId``, ``customerId``, ``currency``, ``lines``
  (``sku``, ``quantity``, ``unitPrice`` as a decimal string). v1 wrote ``price`` as a JSON number;
  an upcaster reads it.
- ``OrderDetailsChanged``: the changed ones of ``customerId``, ``currency``, ``lines``.
- ``OrderStatusChanged``: ``from``, ``to``.
- ``OrderDeleted``: nothing more.

Status follows :data:`TRANSITIONS`; the details change only while an order is a draft. A command
that changes nothing decides no event (a repeated PUT is a no-op, not a new version).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from common.problems import Problem
from eventstore import NewEvent, RecordedEvent, Upcasters
from orders.schema import Line, OrderDraft, money

__all__ = ["ORDER_PROJECTION", "TRANSITIONS", "UPCASTERS", "IllegalTransition", "Order", "OrderProjection",
           "decide_change", "decide_create", "decide_delete"]

TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"submitted", "cancelled"}),
    "submitted": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"shipped", "cancelled"}),
    "shipped": frozenset(),
    "cancelled": frozenset(),
}

UPCASTERS = Upcasters({"OrderCreated": 2, "OrderDetailsChanged": 1, "OrderStatusChanged": 1, "OrderDeleted": 1})


@UPCASTERS.register("OrderCreated", 1)
def _created_v1_prices(data: dict[str, Any]) -> dict[str, Any]:
    """v1 lines carried ``price`` as a JSON number (a double); v2 carries ``unitPrice`` as text."""
    lines = []
    for line in data.get("lines") or []:
        lifted = {key: value for key, value in line.items() if key != "price"}
        lifted["unitPrice"] = money(Decimal(str(line["price"])))
        lines.append(lifted)
    return {**data, "lines": lines}


class IllegalTransition(Problem):
    def __init__(self, current: str, wanted: str) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none: it is final"
        super().__init__(409, "illegal-transition", f"An order that is '{current}' cannot become '{wanted}' "
                         f"(from '{current}' it can become: {allowed}).", reason="illegal_transition")


class NotEditable(Problem):
    def __init__(self, status: str, fields: list[str]) -> None:
        super().__init__(409, "not-editable", f"{', '.join(fields)} can change only while an order is a draft; "
                         f"this one is '{status}'.", reason="not_editable")


@dataclass(frozen=True)
class Order:
    id: str
    tenant_id: str
    customer_id: str
    currency: str
    lines: tuple[Line, ...]
    status: str
    version: int
    created_at: str
    updated_at: str
    created_by: str | None = None
    deleted: bool = False

    @property
    def total(self) -> Decimal:
        return sum((line.total for line in self.lines), Decimal(0))

    def draft(self) -> OrderDraft:
        return OrderDraft(self.customer_id, self.currency, self.lines, self.status)

    def writable_json(self) -> dict[str, Any]:
        """What a client may set, as a merge patch sees the order (RFC 7396's target)."""
        return {**self.draft().to_json(), "status": self.status}

    def to_json(self) -> dict[str, Any]:
        """The representation a client gets."""
        return {"id": self.id, "customerId": self.customer_id, "currency": self.currency, "status": self.status,
                "lines": [{**line.to_json(), "lineTotal": money(line.total)} for line in self.lines],
                "total": money(self.total), "version": self.version, "tenantId": self.tenant_id,
                "createdBy": self.created_by, "createdAt": self.created_at, "updatedAt": self.updated_at}


def _lines(raw: list[dict[str, Any]]) -> tuple[Line, ...]:
    return tuple(Line(str(line["sku"]), int(line["quantity"]), Decimal(str(line["unitPrice"]))) for line in raw)


def _actor(metadata: dict[str, Any]) -> str | None:
    actor = metadata.get("actor") or {}
    value = actor.get("oid") or actor.get("appId")
    return str(value) if value else None


class OrderProjection:
    """How an order folds from its events (:class:`eventstore.Projection`); ``None`` before it exists."""

    snapshot_schema = 1

    def initial(self) -> Order | None:
        return None

    def apply(self, state: Order | None, event: RecordedEvent) -> Order | None:
        data = event.data
        if event.type == "OrderCreated":
            return Order(id=str(data["orderId"]), tenant_id=str(data["tenantId"]), customer_id=str(data["customerId"]),
                         currency=str(data["currency"]), lines=_lines(data["lines"]), status="draft",
                         version=event.version, created_at=event.recorded_at, updated_at=event.recorded_at,
                         created_by=_actor(event.metadata))
        if state is None:
            raise ValueError(f"{event.type} at version {event.version} precedes the order's creation")
        moved = replace(state, version=event.version, updated_at=event.recorded_at)
        if event.type == "OrderDetailsChanged":
            return replace(moved, customer_id=str(data.get("customerId", state.customer_id)),
                           currency=str(data.get("currency", state.currency)),
                           lines=_lines(data["lines"]) if "lines" in data else state.lines)
        if event.type == "OrderStatusChanged":
            return replace(moved, status=str(data["to"]))
        if event.type == "OrderDeleted":
            return replace(moved, deleted=True)
        raise ValueError(f"unknown order event type {event.type!r}")

    def to_snapshot(self, state: Order | None) -> dict[str, Any]:
        if state is None:
            return {}
        return {**state.to_json(), "lines": [line.to_json() for line in state.lines], "deleted": state.deleted}

    def from_snapshot(self, data: dict[str, Any]) -> Order | None:
        if not data:
            return None
        return Order(id=data["id"], tenant_id=data["tenantId"], customer_id=data["customerId"], currency=data["currency"],
                     lines=_lines(data["lines"]), status=data["status"], version=int(data["version"]),
                     created_at=data["createdAt"], updated_at=data["updatedAt"], created_by=data.get("createdBy"),
                     deleted=bool(data.get("deleted")))


ORDER_PROJECTION = OrderProjection()


def decide_create(order_id: str, tenant_id: str, draft: OrderDraft, metadata: dict[str, Any]) -> list[NewEvent]:
    return [NewEvent("OrderCreated", {"orderId": order_id, "tenantId": tenant_id, **draft.to_json()}, metadata)]


def decide_change(order: Order, wanted: OrderDraft, metadata: dict[str, Any]) -> list[NewEvent]:
    """The events that take ``order`` to ``wanted`` (a full replacement): details, then status.

    :class:`NotEditable` when details change outside draft, :class:`IllegalTransition` for a status
    the state machine does not allow; no event when nothing changes.
    """
    events: list[NewEvent] = []
    changed: dict[str, Any] = {}
    current = order.draft().to_json()
    for name, value in wanted.to_json().items():
        if value != current[name]:
            changed[name] = value
    status = wanted.status or order.status
    if changed:
        # A draft may be submitted in the same request that last edits it; edits after that are refused.
        if order.status != "draft":
            raise NotEditable(order.status, sorted(changed))
        events.append(NewEvent("OrderDetailsChanged", changed, metadata))
    if status != order.status:
        if status not in TRANSITIONS[order.status]:
            raise IllegalTransition(order.status, status)
        events.append(NewEvent("OrderStatusChanged", {"from": order.status, "to": status}, metadata))
    return events


def decide_delete(order: Order, metadata: dict[str, Any]) -> list[NewEvent]:
    return [NewEvent("OrderDeleted", {}, metadata)]
