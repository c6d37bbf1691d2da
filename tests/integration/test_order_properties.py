"""Properties of the orders API on the local Cosmos DB server (hypothesis).

- For any sequence of commands, valid or not, the order the API serves equals the last order it
  returned, equals the fold of the whole stream without snapshots, and the stream's versions
  run 1..N with no gap; a refused command (409, 412, 400) writes nothing.
- Any body, any conditional header, any Idempotency-Key and any Authorization header gets a 2xx
  or a 4xx problem, never a 5xx.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orders.schema import STATUSES
from tests.conftest import set_env
from tests.integration.orders_client import OrdersClient, sample_order

pytestmark = pytest.mark.asyncio

PRICES = st.one_of(st.decimals(min_value=0, max_value=10_000, places=2).map(str), st.integers(min_value=0, max_value=99))
LINES = st.lists(st.fixed_dictionaries({"sku": st.sampled_from(["A", "B-2", "c.3"]),
                                        "quantity": st.integers(min_value=1, max_value=50), "unitPrice": PRICES}),
                 min_size=1, max_size=3)
COMMANDS = st.lists(st.one_of(
    st.tuples(st.just("customer"), st.sampled_from(["c-1", "c-2", "c-3"])),
    st.tuples(st.just("lines"), LINES),
    st.tuples(st.just("status"), st.sampled_from(STATUSES)),
    st.tuples(st.just("put"), st.fixed_dictionaries({"customerId": st.sampled_from(["c-1", "c-9"]),
                                                     "currency": st.sampled_from(["EUR", "USD"]), "lines": LINES})),
    st.tuples(st.just("stale"), st.just(None)),
), min_size=1, max_size=14)


@settings(max_examples=25)
@given(commands=COMMANDS)
async def test_any_command_sequence_folds_to_the_last_answer(orders: OrdersClient, monkeypatch: pytest.MonkeyPatch,
                                                             commands: list[tuple[str, Any]]) -> None:
    from common import clients
    from common import settings as app_settings
    from eventstore import EventStore
    from orders.aggregate import ORDER_PROJECTION, UPCASTERS

    set_env(monkeypatch, ORDERS_SNAPSHOT_EVERY="3")
    created = await orders.create()
    last = created.body
    path = created.headers["location"]
    for kind, value in commands:
        etag = f'"{last["version"]}"'
        if kind == "stale":
            answer = await orders.call("PATCH", path, body={"customerId": "stale"}, headers={"If-Match": '"0"'})
            assert answer.status == 412 and answer.etag == etag
            continue
        if kind == "put":
            answer = await orders.call("PUT", path, body=value, headers={"If-Match": etag})
        else:
            patch = {"customer": {"customerId": value}, "lines": {"lines": value}, "status": {"status": value}}[kind]
            answer = await orders.call("PATCH", path, body=patch, headers={"If-Match": etag})
        assert answer.status in (200, 409), (kind, value, answer.body)
        if answer.status == 200:
            assert answer.body["version"] >= last["version"]
            last = answer.body
    served = await orders.call("GET", path, roles=["Orders.Read"])
    assert served.body == last and served.etag == f'"{last["version"]}"'
    container = clients.cosmos_container(container=app_settings.orders_settings().events_container)
    whole = await EventStore(container, upcasters=UPCASTERS, snapshot_every=0).load(last["id"], ORDER_PROJECTION)
    assert whole.state is not None and whole.state.to_json() == last
    history = await orders.call("GET", f"{path}/events?maxPageSize=100", roles=["Orders.Read"])
    assert [e["version"] for e in history.body["value"]] == list(range(1, last["version"] + 1))


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                           max_leaves=12)
BODIES = st.one_of(st.binary(max_size=200),
                   JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                   st.fixed_dictionaries({"customerId": JSON_VALUES, "currency": JSON_VALUES, "lines": JSON_VALUES}).map(
                       lambda v: json.dumps(v).encode()))
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(max_examples=60)
@given(body=BODIES, if_match=st.one_of(st.none(), HEADER_TEXT), key=st.one_of(st.none(), HEADER_TEXT),
       content_type=st.sampled_from(["application/json", "application/merge-patch+json", "text/plain",
                                     "application/json; charset=latin-1", ""]),
       authorization=st.one_of(st.none(), HEADER_TEXT.map(lambda t: f"Bearer {t}")))
async def test_no_request_gets_a_5xx(orders: OrdersClient, body: bytes, if_match: str | None, key: str | None,
                                     content_type: str, authorization: str | None) -> None:
    created = await orders.create(sample_order())
    path = created.headers["location"]
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Idempotency-Key"] = key
    if authorization is not None:
        headers["Authorization"] = authorization
    post = await orders.call("POST", "/api/orders", raw=body, headers=headers)
    if if_match is not None:
        headers["If-Match"] = if_match
    patch = await orders.call("PATCH", path, raw=body, headers=headers)
    get = await orders.call("GET", path, headers={"If-None-Match": if_match or "*"}, roles=["Orders.Read"])
    for answer in (post, patch, get):
        assert answer.status < 500, answer.body
        if answer.status >= 400:
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.body["status"] == answer.status
