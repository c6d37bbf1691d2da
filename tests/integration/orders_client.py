"""A client of the orders API (the ``orders`` fixture of conftest.py builds it) that calls the functions' ``main`` as the host does (an
``HttpRequest`` with route parameters), with bearer tokens from a loopback issuer, on the local
Cosmos DB server. Shared by the orders tests and their property tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

import Order
import OrderEvents
import Orders
from devhost.issuer import LocalIssuer
from tests.conftest import FakeContext

OTHER_TENANT = "11111111-2222-4333-8444-555555555555"
WRITER = ("Orders.Write",)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")


class OrdersClient:
    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer

    def token(self, roles: Iterable[str] = WRITER, tenant: str | None = None, oid: str | None = None) -> str:
        options: dict[str, Any] = {"roles": roles, "tenant": tenant}
        if oid:
            options["oid"] = oid
        return self.issuer.mint(**options)

    async def call(self, method: str, path: str, *, body: Any = None, raw: bytes | None = None,
                   headers: dict[str, str] | None = None, roles: Iterable[str] = WRITER, tenant: str | None = None,
                   token: str | None = None) -> Answer:
        url = f"http://localhost:7071{path}"
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s][1:]  # below /api
        all_headers = {"Authorization": f"Bearer {token or self.token(roles, tenant)}"}
        if body is not None or raw is not None:
            all_headers["Content-Type"] = "application/merge-patch+json" if method == "PATCH" else "application/json"
        all_headers.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        route: dict[str, str] = {}
        if len(segments) == 1:
            module: Any = Orders
        elif len(segments) == 2:
            module, route = Order, {"id": segments[1]}
        else:
            module, route = OrderEvents, {"id": segments[1]}
        request = func.HttpRequest(method, url, headers=all_headers, params=dict(parse_qsl(parts.query)),
                                   route_params=route, body=data)
        response = await module.main(request, FakeContext(function_name=module.__name__))
        text = response.get_body()
        content = json.loads(text) if text else None
        return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, content)

    async def create(self, order: dict[str, Any] | None = None, **options: Any) -> Answer:
        answer = await self.call("POST", "/api/orders", body=order or sample_order(), **options)
        assert answer.status == 201, answer.body
        return answer


def sample_order(lines: int = 2, customer: str = "cust-1") -> dict[str, Any]:
    return {"customerId": customer, "currency": "EUR",
            "lines": [{"sku": f"SKU-{i}", "quantity": i + 1, "unitPrice": "9.99"} for i in range(lines)]}
