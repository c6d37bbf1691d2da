"""The orders package without a store: the schema, merge patch, the state machine, the fold and
its snapshot, upcasting, and the parsing of conditional headers and asOf."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from common import strict_json
from common.problems import TYPE_PREFIX, Problem, problem_body
from eventstore import RecordedEvent, UnknownEventVersion, Upcasters
from orders.aggregate import ORDER_PROJECTION, UPCASTERS, IllegalTransition, NotEditable, Order, decide_change
from orders.api import _entity_tags, _parse_as_of
from orders.schema import InvalidOrder, OrderDraft, merge_patch, money, read_order


def order_json(**changes: Any) -> dict[str, Any]:
    return {"customerId": "c-1", "currency": "EUR", "lines": [{"sku": "A", "quantity": 2, "unitPrice": "1.25"}], **changes}


def pointers(error: InvalidOrder) -> list[str]:
    return [e["pointer"] for e in error.errors]


def created(version: int = 1, **data: Any) -> RecordedEvent:
    body = {"orderId": "o-1", "tenantId": "t-1", **order_json(), **data}
    return RecordedEvent("o-1", version, "OrderCreated", 2, body, {"actor": {"oid": "caller"}}, "2026-12-04T10:00:00.000000Z")


@pytest.mark.parametrize(("raw", "expected"), [
    (b"12", Decimal("12")), (b"0.1", Decimal("0.1")), (b'"19.999"', Decimal("19.999")), (b"12.5000000", Decimal("12.5")),
    (b"999999999999.9999", Decimal("999999999999.9999")), (b"1e3", Decimal("1000")),
])
def test_a_price_is_the_decimal_written(raw: bytes, expected: Decimal) -> None:
    value = strict_json.loads(b'{"customerId": "c", "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unitPrice": '
                              + raw + b"}]}", decimals=True)
    assert read_order(value, max_lines=10).lines[0].unit_price == expected


@pytest.mark.parametrize("raw", [b"-1", b'"1e3"', b"0.30000000000000004", b"12345678901234567.5", b'"12,50"',
                                 b"true", b"null", b'" 1"', b"1000000000000"])
def test_a_price_that_is_not_exact_money_is_refused_by_name(raw: bytes) -> None:
    value = strict_json.loads(b'{"customerId": "c", "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unitPrice": '
                              + raw + b"}]}", decimals=True)
    with pytest.raises(InvalidOrder) as caught:
        read_order(value, max_lines=10)
    assert pointers(caught.value) == ["/lines/0/unitPrice"]


def test_totals_are_exact_decimals() -> None:
    order = ORDER_PROJECTION.apply(None, created(lines=[{"sku": "A", "quantity": 3, "unitPrice": "0.10"},
                                                        {"sku": "B", "quantity": 7, "unitPrice": "0.0001"}]))
    assert order is not None
    assert order.to_json()["total"] == "0.3007"
    assert [line["lineTotal"] for line in order.to_json()["lines"]] == ["0.30", "0.0007"]
    assert money(Decimal("9")) == "9.00"


@pytest.mark.parametrize(("value", "expected"), [
    ({"quantity": True}, "/lines/0/quantity"), ({"quantity": 1.0}, "/lines/0/quantity"),
    ({"quantity": 1_000_001}, "/lines/0/quantity"), ({"sku": ""}, "/lines/0/sku"), ({"sku": "a b"}, "/lines/0/sku"),
    ({"sku": "x" * 65}, "/lines/0/sku"), ({"lineTotal": "2.50"}, "/lines/0/lineTotal"), ({"note": 1}, "/lines/0/note"),
])
def test_each_bad_line_field_is_named(value: dict[str, Any], expected: str) -> None:
    line = {"sku": "A", "quantity": 1, "unitPrice": "1", **value}
    with pytest.raises(InvalidOrder) as caught:
        read_order(order_json(lines=[line]), max_lines=10)
    assert pointers(caught.value) == [expected]


def test_a_create_may_only_start_as_draft_and_status_is_checked() -> None:
    assert read_order(order_json(status="draft"), max_lines=10, allow_status=False).status == "draft"
    with pytest.raises(InvalidOrder):
        read_order(order_json(status="paid"), max_lines=10, allow_status=False)
    with pytest.raises(InvalidOrder):
        read_order(order_json(status="lost"), max_lines=10)


def test_merge_patch_follows_rfc_7396() -> None:
    # RFC 7396 appendix A, a few of its cases.
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}


def test_the_state_machine_refuses_illegal_moves_naming_both_states() -> None:
    draft = ORDER_PROJECTION.apply(None, created())
    assert draft is not None
    with pytest.raises(IllegalTransition) as caught:
        decide_change(draft, OrderDraft(draft.customer_id, draft.currency, draft.lines, "paid"), {})
    assert "'draft'" in caught.value.detail and "'paid'" in caught.value.detail and caught.value.status == 409
    submitted = ORDER_PROJECTION.apply(draft, RecordedEvent("o-1", 2, "OrderStatusChanged", 1,
                                                            {"from": "draft", "to": "submitted"}, {}, "t"))
    assert submitted is not None and submitted.status == "submitted" and submitted.version == 2
    with pytest.raises(NotEditable):
        decide_change(submitted, OrderDraft("other", submitted.currency, submitted.lines, None), {})
    assert decide_change(submitted, submitted.draft(), {}) == []
    both = decide_change(draft, OrderDraft("c-2", "EUR", draft.lines, "submitted"), {})
    assert [e.type for e in both] == ["OrderDetailsChanged", "OrderStatusChanged"]
    assert both[0].data == {"customerId": "c-2"}


def test_a_snapshot_restores_the_same_order() -> None:
    order = ORDER_PROJECTION.apply(None, created())
    assert order is not None
    restored = ORDER_PROJECTION.from_snapshot(ORDER_PROJECTION.to_snapshot(order))
    assert restored == order
    deleted = ORDER_PROJECTION.apply(order, RecordedEvent("o-1", 2, "OrderDeleted", 1, {}, {}, "t"))
    assert ORDER_PROJECTION.from_snapshot(ORDER_PROJECTION.to_snapshot(deleted)) == deleted


def test_an_event_before_the_creation_is_refused() -> None:
    with pytest.raises(ValueError, match="precedes"):
        ORDER_PROJECTION.apply(None, RecordedEvent("o-1", 1, "OrderDeleted", 1, {}, {}, "t"))


def test_version_1_creations_are_upcast_from_a_json_number_price() -> None:
    stored = {"id": "o-1:1", "streamId": "o-1", "kind": "event", "version": 1, "type": "OrderCreated", "schemaVersion": 1,
              "data": {"orderId": "o-1", "tenantId": "t-1", "customerId": "c", "currency": "EUR",
                       "lines": [{"sku": "A", "quantity": 2, "price": 4.5}]},
              "metadata": {}, "recordedAt": "2025-01-01T00:00:00.000000Z"}
    event = RecordedEvent.from_document(stored, UPCASTERS)
    assert event.schema_version == 2 and event.data["lines"] == [{"sku": "A", "quantity": 2, "unitPrice": "4.50"}]
    order = ORDER_PROJECTION.apply(None, event)
    assert isinstance(order, Order) and order.to_json()["total"] == "9.00"


def test_an_event_newer_than_the_code_or_without_an_upcaster_is_refused() -> None:
    upcasters = Upcasters({"Thing": 3})
    upcasters.register("Thing", 1)(lambda data: {**data, "v2": True})
    with pytest.raises(UnknownEventVersion, match="newer"):
        upcasters.upcast("Thing", 4, {})
    with pytest.raises(UnknownEventVersion, match="No upcaster"):
        upcasters.upcast("Thing", 1, {})
    with pytest.raises(ValueError):
        upcasters.register("Thing", 3)


@pytest.mark.parametrize(("value", "expected"), [
    ('"3"', [(False, "3")]), ('W/"3"', [(True, "3")]), ('"1", W/"2" ,"3"', [(False, "1"), (True, "2"), (False, "3")]),
    ("*", "*"), (' "3" ', [(False, "3")]),
])
def test_entity_tags_are_read_as_rfc_9110_writes_them(value: str, expected: Any) -> None:
    assert _entity_tags("If-Match", value) == expected


@pytest.mark.parametrize("value", ["3", '"3', 'W/3', '"3",,"4"', "", " ", '"a"b"', '"3" "4"', "**"])
def test_malformed_entity_tags_are_400(value: str) -> None:
    with pytest.raises(Problem) as caught:
        _entity_tags("If-Match", value)
    assert caught.value.status == 400 and "If-Match" in caught.value.detail


@pytest.mark.parametrize(("text", "expected"), [("7", 7), ("2026-12-04T10:00:00Z", "2026-12-04T10:00:00+00:00"),
                                                ("2026-12-04t10:00:00.5+01:00", "2026-12-04T10:00:00.500000+01:00")])
def test_as_of_is_a_version_or_an_instant_with_its_offset(text: str, expected: Any) -> None:
    parsed = _parse_as_of(text)
    assert (parsed if isinstance(parsed, int) else parsed.isoformat()) == expected


@pytest.mark.parametrize("text", ["0", "-3", "x", "2026-12-04", "2026-12-04T10:00:00", "99999999999", "1.5"])
def test_a_bad_as_of_is_400(text: str) -> None:
    with pytest.raises(Problem) as caught:
        _parse_as_of(text)
    assert caught.value.status == 400


def test_problem_bodies_follow_rfc_9457_and_list_at_most_50_errors() -> None:
    body = problem_body(400, "bad", slug="invalid-order", errors=[{"pointer": f"/lines/{i}", "detail": "x"} for i in range(60)])
    assert body["type"] == TYPE_PREFIX + "invalid-order" and body["title"] == "Bad Request" and body["status"] == 400
    assert len(body["errors"]) == 51 and body["errors"][-1]["detail"] == "... and 10 more problems"
    assert problem_body(503, "later")["type"] == "about:blank"
