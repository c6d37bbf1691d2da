"""The orders API on the local Cosmos DB server, through each function's ``main``: the contract,
the conditional writes, idempotent creates, history, time travel, tenants and the races."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from devhost.emulators import Emulators
from tests.integration.orders_client import OTHER_TENANT, OrdersClient, sample_order

pytestmark = pytest.mark.asyncio

PROBLEM = "application/problem+json"


def assert_problem(answer: Any, status: int, slug: str | None = None) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["content-type"].startswith(PROBLEM)
    body = answer.body
    assert body["status"] == status and body["title"] and body["detail"]
    if slug is not None:
        assert body["type"].endswith(f"/{slug}"), body["type"]
    return body


async def test_create_returns_201_with_location_etag_and_computed_totals(orders: OrdersClient) -> None:
    order = {"customerId": "c-42", "currency": "EUR",
             "lines": [{"sku": "A-1", "quantity": 3, "unitPrice": 0.1}, {"sku": "B-2", "quantity": 1, "unitPrice": "19.999"}]}
    answer = await orders.create(order)
    body = answer.body
    assert answer.headers["location"] == f"/api/orders/{body['id']}"
    assert answer.etag == '"1"' and body["version"] == 1 and body["status"] == "draft"
    # 3 x 0.1 is exactly 0.30 (never 0.30000000000000004), and 19.999 keeps its third decimal.
    assert [line["lineTotal"] for line in body["lines"]] == ["0.30", "19.9990"]
    assert body["total"] == "20.2990"
    got = await orders.call("GET", answer.headers["location"], roles=["Orders.Read"])
    assert got.status == 200 and got.body == body and got.etag == '"1"'
    assert got.headers["cache-control"] == "private, no-cache"


async def test_if_none_match_with_the_current_etag_is_304(orders: OrdersClient) -> None:
    created = await orders.create()
    path = created.headers["location"]
    for value in ('"1"', 'W/"1"', '"9", "1"', "*"):
        answer = await orders.call("GET", path, headers={"If-None-Match": value}, roles=["Orders.Read"])
        assert (answer.status, answer.body, answer.etag) == (304, None, '"1"'), value
    assert (await orders.call("GET", path, headers={"If-None-Match": '"2"'}, roles=["Orders.Read"])).status == 200


async def test_another_tenants_order_and_a_made_up_id_are_the_same_404(orders: OrdersClient) -> None:
    created = await orders.create()
    path = created.headers["location"]
    theirs = await orders.call("GET", path, tenant=OTHER_TENANT, roles=["Orders.Admin"])
    never = await orders.call("GET", "/api/orders/00000000-0000-4000-8000-000000000000", roles=["Orders.Read"])
    junk = await orders.call("GET", "/api/orders/not-an-id", roles=["Orders.Read"])
    for answer in (theirs, never, junk):
        assert_problem(answer, 404, "not-found")
    assert theirs.body == never.body == junk.body
    patch = await orders.call("PATCH", path, tenant=OTHER_TENANT, body={"currency": "USD"}, headers={"If-Match": '"1"'})
    assert_problem(patch, 404)
    assert (await orders.call("GET", f"{path}/events", tenant=OTHER_TENANT, roles=["Orders.Admin"])).status == 404


async def test_writes_need_if_match_and_a_stale_one_is_412_with_the_current_etag(orders: OrdersClient) -> None:
    path = (await orders.create()).headers["location"]
    assert_problem(await orders.call("PATCH", path, body={"customerId": "c-2"}), 428, "precondition-required")
    assert_problem(await orders.call("PATCH", path, body={"customerId": "c-2"}, headers={"If-Match": "*"}), 428)
    changed = await orders.call("PATCH", path, body={"customerId": "c-2"}, headers={"If-Match": '"1"'})
    assert changed.status == 200 and changed.etag == '"2"' and changed.body["customerId"] == "c-2"
    stale = await orders.call("PATCH", path, body={"customerId": "c-3"}, headers={"If-Match": '"1"'})
    assert_problem(stale, 412, "precondition-failed")
    assert stale.etag == '"2"'
    # A weak tag never matches If-Match (strong comparison); a list matches when one tag does.
    assert (await orders.call("PATCH", path, body={"customerId": "c-3"}, headers={"If-Match": 'W/"2"'})).status == 412
    assert (await orders.call("PATCH", path, body={"customerId": "c-3"}, headers={"If-Match": '"7", "2"'})).status == 200
    for malformed in ("2", '"2', "W/2", '"2",,', ""):
        assert_problem(await orders.call("PATCH", path, body={"customerId": "c-4"}, headers={"If-Match": malformed}),
                       400, "bad-precondition")


async def test_patch_takes_merge_patch_only_and_refuses_read_only_fields(orders: OrdersClient) -> None:
    path = (await orders.create()).headers["location"]
    wrong = await orders.call("PATCH", path, raw=b'{"customerId": "x"}',
                              headers={"If-Match": '"1"', "Content-Type": "application/json"})
    assert_problem(wrong, 415, "unsupported-media-type")
    assert wrong.headers["accept-patch"] == "application/merge-patch+json"
    for field in ("id", "version", "total", "tenantId", "createdBy"):
        refused = await orders.call("PATCH", path, body={field: "x"}, headers={"If-Match": '"1"'})
        body = assert_problem(refused, 400, "invalid-order")
        assert {"pointer": f"/{field}", "detail": "is set by the API and may not be sent"} in body["errors"]
    nulled = await orders.call("PATCH", path, body={"customerId": None, "lines": None}, headers={"If-Match": '"1"'})
    pointers = {error["pointer"] for error in assert_problem(nulled, 400)["errors"]}
    assert pointers == {"/customerId", "/lines"}
    totals = await orders.call("PATCH", path, body={"lines": [{"sku": "A", "quantity": 1, "unitPrice": 1, "lineTotal": 0}]},
                               headers={"If-Match": '"1"'})
    assert assert_problem(totals, 400)["errors"] == [{"pointer": "/lines/0/lineTotal",
                                                      "detail": "is computed by the API and may not be sent"}]
    got = await orders.call("GET", path, roles=["Orders.Read"])
    assert got.body["version"] == 1  # nothing of the refused patches was written


async def test_put_replaces_and_an_unchanged_put_writes_nothing(orders: OrdersClient) -> None:
    created = await orders.create()
    path = created.headers["location"]
    replacement = {"customerId": "c-9", "currency": "USD", "lines": [{"sku": "Z", "quantity": 2, "unitPrice": "5"}]}
    put = await orders.call("PUT", path, body=replacement, headers={"If-Match": '"1"'})
    assert put.status == 200 and put.etag == '"2"' and put.body["total"] == "10.00" and put.body["currency"] == "USD"
    again = await orders.call("PUT", path, body=replacement, headers={"If-Match": '"2"'})
    assert again.status == 200 and again.etag == '"2"'
    history = await orders.call("GET", f"{path}/events", roles=["Orders.Read"])
    assert [e["type"] for e in history.body["value"]] == ["OrderCreated", "OrderDetailsChanged"]


async def test_status_follows_the_state_machine_and_an_illegal_move_is_409_naming_both(orders: OrdersClient) -> None:
    path = (await orders.create()).headers["location"]
    illegal = await orders.call("PATCH", path, body={"status": "shipped"}, headers={"If-Match": '"1"'})
    body = assert_problem(illegal, 409, "illegal-transition")
    assert "'draft'" in body["detail"] and "'shipped'" in body["detail"]
    version = 1
    for status in ("submitted", "paid", "shipped"):
        moved = await orders.call("PATCH", path, body={"status": status}, headers={"If-Match": f'"{version}"'})
        assert moved.status == 200 and moved.body["status"] == status, moved.body
        version += 1
    edit = await orders.call("PATCH", path, body={"customerId": "late"}, headers={"If-Match": f'"{version}"'})
    assert_problem(edit, 409, "not-editable")
    cancel = await orders.call("PATCH", path, body={"status": "cancelled"}, headers={"If-Match": f'"{version}"'})
    assert "'shipped'" in assert_problem(cancel, 409)["detail"]


async def test_an_edit_and_a_submit_in_one_patch_are_two_events_written_atomically(orders: OrdersClient) -> None:
    path = (await orders.create()).headers["location"]
    both = await orders.call("PATCH", path, body={"customerId": "c-7", "status": "submitted"}, headers={"If-Match": '"1"'})
    assert both.status == 200 and both.etag == '"3"'
    history = await orders.call("GET", f"{path}/events", roles=["Orders.Read"])
    assert [(e["version"], e["type"]) for e in history.body["value"]] == [
        (1, "OrderCreated"), (2, "OrderDetailsChanged"), (3, "OrderStatusChanged")]


async def test_delete_is_an_event_then_404_and_the_history_stays_for_admins(orders: OrdersClient) -> None:
    path = (await orders.create()).headers["location"]
    assert_problem(await orders.call("DELETE", path), 428)
    deleted = await orders.call("DELETE", path, headers={"If-Match": '"1"'})
    assert (deleted.status, deleted.body) == (204, None)
    assert_problem(await orders.call("GET", path, roles=["Orders.Admin"]), 404)
    # A stale (or current) ETag after the delete: the order is gone, so 404 (RFC 9110 section 13.2.1).
    assert_problem(await orders.call("PATCH", path, body={"customerId": "x"}, headers={"If-Match": '"1"'}), 404)
    assert_problem(await orders.call("DELETE", path, headers={"If-Match": '"2"'}), 404)
    assert (await orders.call("GET", f"{path}/events", roles=["Orders.Read"])).status == 404
    history = await orders.call("GET", f"{path}/events", roles=["Orders.Admin"])
    assert [e["type"] for e in history.body["value"]] == ["OrderCreated", "OrderDeleted"]
    then = await orders.call("GET", f"{path}?asOf=1", roles=["Orders.Admin"])
    assert then.status == 200 and then.body["version"] == 1


async def test_every_event_records_who_did_it_and_within_what(orders: OrdersClient) -> None:
    created = await orders.call("POST", "/api/orders", body=sample_order(), headers={"x-correlation-id": "corr-77"},
                                token=orders.token(oid="aaaaaaaa-1111-4222-8333-444444444444"))
    history = await orders.call("GET", f"{created.headers['location']}/events", roles=["Orders.Read"])
    metadata = history.body["value"][0]["metadata"]
    assert metadata["actor"] == {"oid": "aaaaaaaa-1111-4222-8333-444444444444", "appId": metadata["actor"]["appId"],
                                 "tid": orders.issuer.tenant}
    assert metadata["correlationId"] == "corr-77" and metadata["causationId"]
    assert created.body["createdBy"] == "aaaaaaaa-1111-4222-8333-444444444444"


async def test_events_are_paged_with_next_link(orders: OrdersClient) -> None:
    path = (await orders.create()).headers["location"]
    for version in range(1, 8):
        customer = f"c-{version}"
        assert (await orders.call("PATCH", path, body={"customerId": customer},
                                  headers={"If-Match": f'"{version}"'})).status == 200
    seen: list[int] = []
    link: str | None = f"{path}/events?maxPageSize=3"
    while link:
        page = await orders.call("GET", link.replace("http://localhost:7071", ""), roles=["Orders.Read"])
        assert page.status == 200 and len(page.body["value"]) <= 3
        seen += [e["version"] for e in page.body["value"]]
        link = page.body.get("nextLink")
    assert seen == list(range(1, 9))
    assert_problem(await orders.call("GET", f"{path}/events?maxPageSize=0", roles=["Orders.Read"]), 400, "bad-query")


async def test_as_of_a_version_or_an_instant_shows_the_order_as_it_was(orders: OrdersClient) -> None:
    path = (await orders.create()).headers["location"]
    first = (await orders.call("GET", path, roles=["Orders.Read"])).body
    await asyncio.sleep(0.01)
    for version in range(1, 25):  # past two snapshots (ORDERS_SNAPSHOT_EVERY=10)
        assert (await orders.call("PATCH", path, body={"customerId": f"c-{version}"},
                                  headers={"If-Match": f'"{version}"'})).status == 200
    assert (await orders.call("GET", f"{path}?asOf=1", roles=["Orders.Read"])).body == first
    at_12 = await orders.call("GET", f"{path}?asOf=12", roles=["Orders.Read"])
    assert at_12.body["version"] == 12 and at_12.body["customerId"] == "c-11"
    instant = first["createdAt"]
    assert (await orders.call("GET", f"{path}?asOf={instant}", roles=["Orders.Read"])).body == first
    assert_problem(await orders.call("GET", f"{path}?asOf=2001-01-01T00:00:00Z", roles=["Orders.Read"]), 404)
    assert_problem(await orders.call("GET", f"{path}?asOf=99", roles=["Orders.Read"]), 404)
    for bad in ("yesterday", "0", "-1", "2026-12-04", "2026-12-04T10:00:00"):
        assert_problem(await orders.call("GET", f"{path}?asOf={bad}", roles=["Orders.Read"]), 400, "bad-query")
    current = await orders.call("GET", path, roles=["Orders.Read"])
    assert current.body["version"] == 25 and current.body["customerId"] == "c-24"


async def test_roles_per_route(orders: OrdersClient) -> None:
    created = await orders.create()
    path = created.headers["location"]
    assert_problem(await orders.call("POST", "/api/orders", body=sample_order(), roles=["Orders.Read"]), 403)
    assert_problem(await orders.call("PATCH", path, body={"customerId": "x"}, headers={"If-Match": '"1"'},
                                     roles=["Orders.Read"]), 403)
    assert_problem(await orders.call("GET", path, roles=["Events.Publish"]), 403)
    assert (await orders.call("GET", path, roles=["Orders.Write"])).status == 200
    unauthenticated = await orders.call("GET", path, token="not-a-token")
    assert unauthenticated.status in (400, 401) and unauthenticated.headers["content-type"].startswith(PROBLEM)
    assert "www-authenticate" in unauthenticated.headers


async def test_idempotency_key_same_body_same_201_other_body_422(orders: OrdersClient) -> None:
    key = {"Idempotency-Key": "order-key-1"}
    first = await orders.call("POST", "/api/orders", body=sample_order(), headers=key)
    again = await orders.call("POST", "/api/orders", body=sample_order(), headers=key)
    assert first.status == again.status == 201
    assert again.body == first.body and again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    other = await orders.call("POST", "/api/orders", body=sample_order(lines=3), headers=key)
    assert_problem(other, 422, "idempotency-key-reused")
    # Keys are the tenant's: another tenant's same key is another order.
    theirs = await orders.call("POST", "/api/orders", body=sample_order(), headers=key, tenant=OTHER_TENANT)
    assert theirs.status == 201 and theirs.body["id"] != first.body["id"]
    assert_problem(await orders.call("POST", "/api/orders", body=sample_order(), headers={"Idempotency-Key": "bad key"}),
                   400, "bad-idempotency-key")


async def test_an_expired_idempotency_key_starts_a_new_order(orders: OrdersClient) -> None:
    """The key record past its expiry (Cosmos DB's TTL may not have removed it yet) is renewed,
    under its ETag, for a new order id; until then the key keeps its order."""
    from datetime import UTC, datetime, timedelta

    from common import clients, settings
    from orders.idempotency import IdempotencyKeys

    moments = [datetime(2026, 12, 4, 10, 0, tzinfo=UTC)]
    container = clients.cosmos_container(container=settings.orders_settings().idempotency_container)
    keys = IdempotencyKeys(container, ttl_hours=24, budget_seconds=5, now=lambda: moments[0])
    first = await keys.claim("tenant-a", "key-1", "fingerprint-1")
    moments[0] += timedelta(hours=23, minutes=59)
    assert await keys.claim("tenant-a", "key-1", "fingerprint-1") == first
    moments[0] += timedelta(minutes=2)
    renewed = await keys.claim("tenant-a", "key-1", "fingerprint-2")  # expired: any body starts anew
    assert renewed != first
    assert await keys.claim("tenant-a", "key-1", "fingerprint-2") == renewed


async def test_20_concurrent_posts_with_one_key_make_one_order(orders: OrdersClient, capsys: pytest.CaptureFixture[str]) -> None:
    key = {"Idempotency-Key": "race-key"}
    answers = await asyncio.gather(*(orders.call("POST", "/api/orders", body=sample_order(), headers=key)
                                     for _ in range(20)))
    assert {a.status for a in answers} == {201}
    ids = {a.body["id"] for a in answers}
    assert len(ids) == 1
    assert len({json.dumps(a.body, sort_keys=True) for a in answers}) == 1
    history = await orders.call("GET", f"/api/orders/{ids.pop()}/events", roles=["Orders.Read"])
    assert [e["type"] for e in history.body["value"]] == ["OrderCreated"]
    replayed = sum(a.headers.get("idempotent-replayed") == "true" for a in answers)
    with capsys.disabled():
        print(f"\n[figure] 20 concurrent POSTs, one Idempotency-Key: 1 order, 20 x 201 ({replayed} replayed)")


async def test_50_concurrent_patches_with_one_if_match_one_wins(orders: OrdersClient, capsys: pytest.CaptureFixture[str]) -> None:
    path = (await orders.create()).headers["location"]
    answers = await asyncio.gather(*(orders.call("PATCH", path, body={"customerId": f"c-{i}"}, headers={"If-Match": '"1"'})
                                     for i in range(50)))
    statuses = sorted(a.status for a in answers)
    assert statuses.count(200) == 1 and statuses.count(412) == 49, statuses
    assert all(a.etag == '"2"' for a in answers)
    history = await orders.call("GET", f"{path}/events", roles=["Orders.Read"])
    assert [e["version"] for e in history.body["value"]] == [1, 2]
    winner = next(a for a in answers if a.status == 200)
    assert (await orders.call("GET", path, roles=["Orders.Read"])).body == winner.body
    with capsys.disabled():
        print("\n[figure] 50 concurrent PATCHes, one If-Match: 1 x 200, 49 x 412, 1 new event")


async def test_bad_bodies_are_named_precisely(orders: OrdersClient) -> None:
    huge = {"customerId": "c", "currency": "EUR", "lines": [{"sku": f"S{i}", "quantity": 1, "unitPrice": "1"}
                                                             for i in range(10_000)]}
    assert_problem(await orders.call("POST", "/api/orders", body=huge), 413, "too-large")
    many = {**huge, "lines": huge["lines"][:501]}
    body = assert_problem(await orders.call("POST", "/api/orders", body=many), 400, "invalid-order")
    assert body["errors"] == [{"pointer": "/lines", "detail": "holds 501 lines; at most 500 are accepted"}]
    precise = b'{"customerId": "c", "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unitPrice": 12345678901234567.5}]}'
    body = assert_problem(await orders.call("POST", "/api/orders", raw=precise), 400)
    assert body["errors"][0]["pointer"] == "/lines/0/unitPrice"
    tiny = b'{"customerId": "c", "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unitPrice": 0.30000000000000004}]}'
    assert assert_problem(await orders.call("POST", "/api/orders", raw=tiny), 400)["errors"][0]["pointer"] == "/lines/0/unitPrice"
    messy = {"customerId": "", "currency": "eur", "lines": [{"sku": "A", "quantity": 0, "unitPrice": "-1"}, "x"],
             "total": "1.00", "extra": 1}
    pointers = [e["pointer"] for e in assert_problem(await orders.call("POST", "/api/orders", body=messy), 400)["errors"]]
    assert pointers == ["/extra", "/total", "/customerId", "/currency", "/lines/0/quantity", "/lines/0/unitPrice", "/lines/1"]
    assert_problem(await orders.call("POST", "/api/orders", raw=b'{"a": NaN}'), 400, "not-json")
    assert_problem(await orders.call("POST", "/api/orders", raw=b"{}", headers={"Content-Type": "text/plain"}), 415)
    assert_problem(await orders.call("POST", "/api/orders", body={**sample_order(), "status": "paid"}), 400)


async def test_a_cosmos_outage_is_503_with_retry_after_and_writes_nothing(orders: OrdersClient, emulators: Emulators,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import set_env

    set_env(monkeypatch, ORDERS_STORE_BUDGET_SECONDS="1")
    created = await orders.create()
    path = created.headers["location"]
    emulators.cosmos_faults(created.body["id"], status=503)
    try:
        answer = await orders.call("PATCH", path, body={"status": "submitted"}, headers={"If-Match": '"1"'})
    finally:
        emulators.cosmos_faults(None)
    assert_problem(answer, 503)
    assert int(answer.headers["retry-after"]) >= 1
    got = await orders.call("GET", path, roles=["Orders.Read"])
    assert got.body["version"] == 1 and got.body["status"] == "draft"
