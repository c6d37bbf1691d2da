"""The orders API over the event store: ``/api/orders``, ``/api/orders/{id}``, ``/api/orders/{id}/events``.

Each route's function calls one entry point here with the request's parts, its services and
settings, and gets a :class:`~common.http_api.Reply`; every error is problem details (RFC 9457)::

    reply = await order_item(request, invocation_id=iid, log=log, services=order_services,
                             read_settings=settings.orders_settings, callers=http_api.caller_check)

- Writes are conditional: PUT, PATCH and DELETE need ``If-Match`` with the order's ETag (428
  without it, 412 when stale, the current ETag in the answer). Two writers racing on one version
  cannot both succeed: the event store's append is conditional on the version.
- POST with ``Idempotency-Key``: the same key and body give the same 201 (``Idempotent-Replayed:
  true`` on a repeat) however often and however concurrently it is sent; another body is 422.
- An order of another tenant, a deleted one (except its history, for ``Orders.Admin``) and one that
  never existed are the same 404.

docs/orders.md has the contract with examples.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from common import strict_json, telemetry
from common.http_api import CallerCheck, Reply, Responder, admit, body_error
from common.logs import InvocationLog
from common.problems import Problem
from common.settings import OrdersSettings
from eventstore import EventStore, Loaded, WrongExpectedVersion
from identity import Principal, Requirement, RouteAccess
from orders.aggregate import ORDER_PROJECTION, UPCASTERS, Order, decide_change, decide_create, decide_delete
from orders.idempotency import IdempotencyKeys
from orders.schema import InvalidOrder, OrderDraft, merge_patch, read_order

__all__ = ["ADMIN_ROLE", "READ", "WRITE", "OrderRequest", "OrderServices", "create_order", "entity_tag", "order_events",
           "order_item", "order_services"]

_ALL = {"Orders.Read", "Orders.Write", "Orders.Admin"}
#: Reading needs any of the orders roles (or delegated scopes); writing Orders.Write or Orders.Admin.
READ = RouteAccess(Requirement(roles=_ALL, scopes=_ALL))
WRITE = RouteAccess(Requirement(roles={"Orders.Write", "Orders.Admin"}, scopes={"Orders.Write", "Orders.Admin"}))
#: Who may read the history of a deleted order.
ADMIN_ROLE = "Orders.Admin"
MERGE_PATCH = "application/merge-patch+json"
_ORDER_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: One entity tag of a list (RFC 9110 section 8.8.3): optional W/, then a quoted string of etagc.
_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')
#: How a client may cache an order: keep it, but ask (If-None-Match) before using it again.
_REVALIDATE = "private, no-cache"


@dataclass(frozen=True)
class OrderRequest:
    method: str
    url: str
    #: Header names in lower case.
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes = b""
    order_id: str | None = None

    @classmethod
    def of(cls, method: str, url: str, headers: Mapping[str, str], query: Mapping[str, str], body: bytes,
           order_id: str | None = None) -> OrderRequest:
        return cls(method.upper(), url, {str(k).lower(): v for k, v in headers.items()}, dict(query), body, order_id)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(frozen=True)
class OrderServices:
    store: EventStore
    keys: IdempotencyKeys


def entity_tag(version: int) -> str:
    return f'"{version}"'


# ------------------------------------------------------------------ the pieces

def _not_found() -> Problem:
    return Problem(404, "not-found", "No such order.", reason="not_found")


def _tenant_of(principal: Principal) -> str:
    if not principal.tenant_id:
        raise Problem(403, "no-tenant", "The caller's token names no tenant ('tid'): orders belong to a tenant.",
                      reason="forbidden")
    return principal.tenant_id.lower()


def _is_admin(principal: Principal) -> bool:
    return ADMIN_ROLE in principal.roles or ADMIN_ROLE in principal.scopes


def _metadata(principal: Principal, respond: Responder, invocation_id: str) -> dict[str, Any]:
    """Who caused an event and within what: kept with every event."""
    metadata: dict[str, Any] = {"actor": {"oid": principal.object_id, "appId": principal.client_id,
                                          "tid": principal.tenant_id},
                                "correlationId": respond.correlation_id, "causationId": invocation_id}
    traceparent = telemetry.trace_headers().get("traceparent")
    if traceparent:
        metadata["traceparent"] = traceparent
    return metadata


def _check_media_type(value: str | None, accepted: tuple[str, ...]) -> None:
    media_type, _, parameters = (value or accepted[0]).partition(";")
    if media_type.strip().lower() not in accepted:
        headers = {"Accept-Patch": MERGE_PATCH} if MERGE_PATCH in accepted else {}
        raise Problem(415, "unsupported-media-type", f"Content-Type must be {' or '.join(repr(a) for a in accepted)}.",
                      reason="unsupported_media_type", headers=headers)
    for parameter in parameters.split(";"):
        name, _, charset = parameter.partition("=")
        if name.strip().lower() == "charset" and charset.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise Problem(415, "unsupported-media-type", "The body must be UTF-8.", reason="unsupported_charset")


def _read_body(request: OrderRequest, cfg: OrdersSettings, accepted: tuple[str, ...]) -> Any:
    _check_media_type(request.header("content-type"), accepted)
    if len(request.body) > cfg.max_body_bytes:
        raise Problem(413, "too-large", f"The body is {len(request.body)} bytes; at most {cfg.max_body_bytes} are "
                      "accepted.", reason="too_large")
    if not request.body.strip():
        raise InvalidOrder([{"pointer": "", "detail": "is empty"}], "The body is empty: send the order as a JSON object.")
    try:
        return strict_json.loads(request.body, decimals=True)
    except strict_json.JsonInputError as exc:
        raise Problem(400, "not-json", body_error(exc), reason="not_json") from None


def _entity_tags(header: str, value: str) -> list[tuple[bool, str]] | Literal["*"]:
    """The entity tags of an If-Match / If-None-Match value, or 400 naming the header."""
    if value.strip() == "*":
        return "*"
    tags: list[tuple[bool, str]] = []
    position = 0
    while position < len(value):
        match = _ENTITY_TAG.match(value, position)
        if match is None or match.end() == position:
            raise Problem(400, "bad-precondition", f"{header} must be one or more entity tags in double quotes, "
                          'such as "3" (the ETag the order was read with).', reason="bad_precondition")
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
    if not tags:
        raise Problem(400, "bad-precondition", f"{header} is empty.", reason="bad_precondition")
    return tags


def _required_if_match(request: OrderRequest) -> list[tuple[bool, str]]:
    value = request.header("if-match")
    if value is None:
        raise Problem(428, "precondition-required", "This request must carry If-Match with the ETag of the order as "
                      "last read (GET it first), so that it cannot overwrite a change it has not seen.",
                      reason="precondition_required")
    tags = _entity_tags("If-Match", value)
    if tags == "*":
        raise Problem(428, "precondition-required", "If-Match: * names no version: send the ETag of the order as last "
                      "read.", reason="precondition_required")
    return tags


def _check_if_match(tags: list[tuple[bool, str]], order: Order) -> None:
    """Strong comparison (RFC 9110 section 13.1.1): a weak tag never matches."""
    if not any(not weak and tag == str(order.version) for weak, tag in tags):
        raise _stale(order.version)


def _stale(version: int) -> Problem:
    return Problem(412, "precondition-failed", f"The order has changed since it was read: it is at version {version}; "
                   "GET it, then retry with its ETag.", reason="precondition_failed",
                   headers={"ETag": entity_tag(version)})


def _order_id(request: OrderRequest) -> str:
    """The route's order id: ours are lower-case UUIDs; anything else names no order (404)."""
    value = (request.order_id or "").lower()
    if not _ORDER_ID.fullmatch(value):
        raise _not_found()
    return value


async def _live_order(services: OrderServices, order_id: str, tenant: str, *,
                      include_deleted: bool = False) -> Loaded[Order | None]:
    loaded = await services.store.load(order_id, ORDER_PROJECTION)
    order = loaded.state
    if order is None or order.tenant_id != tenant or (order.deleted and not include_deleted):
        raise _not_found()
    return loaded


def _order_reply(respond: Responder, status: int, order: Order, outcome: str, **headers: str) -> Reply:
    return respond(status, order.to_json(), outcome, ETag=entity_tag(order.version), **headers)


def _fingerprint(draft: OrderDraft) -> str:
    return hashlib.sha256(json.dumps(draft.to_json(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _parse_as_of(value: str) -> int | datetime:
    text = value.strip()
    if text.isdigit() and len(text) <= 10:
        version = int(text)
        if version >= 1:
            return version
    else:
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None and "T" in text.upper():
            return moment
    raise Problem(400, "bad-query", "asOf must be a version (1 or more) or an RFC 3339 instant with its offset, "
                  "such as 2026-12-04T10:00:00Z.", reason="bad_query")


def _int_query(request: OrderRequest, name: str, default: int, minimum: int, maximum: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 10 or not minimum <= int(text) <= maximum:
        raise Problem(400, "bad-query", f"{name} must be an integer from {minimum} to {maximum}.", reason="bad_query")
    return int(text)


async def _serve(request: OrderRequest, operation: str, *, invocation_id: str, log: InvocationLog,
                 access: RouteAccess, callers: Callable[[RouteAccess], CallerCheck],
                 work: Callable[[Responder, Principal], Awaitable[Reply]]) -> Reply:
    from identity import Credentials

    respond = Responder.for_request(operation, method=request.method, caller_correlation_id=request.header("x-correlation-id"),
                                    invocation_id=invocation_id, log=log, requests_metric="app.orders.requests",
                                    problems=True)

    async def run() -> Reply:
        caller = await admit(Credentials.from_headers(request.headers), respond, callers(access))
        if isinstance(caller, Reply):
            return caller
        return await work(respond, caller)

    return await respond.guard(run)


# ------------------------------------------------------------------ the routes

async def create_order(request: OrderRequest, *, invocation_id: str, log: InvocationLog,
                       services: Callable[[OrdersSettings], OrderServices], read_settings: Callable[[], OrdersSettings],
                       callers: Callable[[RouteAccess], CallerCheck]) -> Reply:
    """``POST /api/orders``: 201 with Location and ETag, the same 201 again for a repeated Idempotency-Key."""

    async def work(respond: Responder, principal: Principal) -> Reply:
        cfg = read_settings()
        tenant = _tenant_of(principal)
        draft = read_order(_read_body(request, cfg, ("application/json",)), max_lines=cfg.max_lines, allow_status=False)
        store_services = services(cfg)
        key = request.header("idempotency-key")
        if key is not None:
            order_id = await store_services.keys.claim(tenant, key, _fingerprint(draft))
            command_id = f"create:{order_id}"  # the same for every request with this key: a repeat finds its own event
        else:
            order_id = str(uuid.uuid4())
            command_id = f"request:{invocation_id}"
        events = decide_create(order_id, tenant, draft, _metadata(principal, respond, invocation_id))
        try:
            loaded = await store_services.store.append(order_id, events, expected_version=0, command_id=command_id,
                                                       projection=ORDER_PROJECTION, state=None)
        except WrongExpectedVersion:
            # Only an order id from a key can exist already, and its first event is this command's.
            raise Problem(409, "conflict", "The order of this Idempotency-Key was created by another request.",
                          reason="idempotency_key_reused") from None
        replayed = loaded.replayed
        if replayed:  # the original answer: the order as its creation left it
            loaded = await store_services.store.load(order_id, ORDER_PROJECTION, up_to_version=1)
        order = loaded.state
        assert order is not None
        respond.log.info("order.created", orderId=order_id, lines=len(order.lines), replayed=replayed)
        extra = {"Idempotent-Replayed": "true"} if replayed else {}
        return _order_reply(respond, 201, order, "replayed" if replayed else "created",
                            Location=f"/api/orders/{order_id}", **extra)

    return await _serve(request, "order.create", invocation_id=invocation_id, log=log, access=WRITE, callers=callers,
                        work=work)


async def order_item(request: OrderRequest, *, invocation_id: str, log: InvocationLog,
                     services: Callable[[OrdersSettings], OrderServices], read_settings: Callable[[], OrdersSettings],
                     callers: Callable[[RouteAccess], CallerCheck]) -> Reply:
    """``GET``, ``PUT``, ``PATCH`` and ``DELETE /api/orders/{id}``."""
    reading = request.method == "GET"

    async def read(respond: Responder, principal: Principal) -> Reply:
        cfg = read_settings()
        tenant = _tenant_of(principal)
        order_id = _order_id(request)
        as_of_text = request.query.get("asOf")
        as_of = _parse_as_of(as_of_text) if as_of_text is not None else None
        store = services(cfg).store
        current = await _live_order(services(cfg), order_id, tenant, include_deleted=as_of is not None and _is_admin(principal))
        order = current.state
        assert order is not None
        if as_of is None:
            wanted = request.header("if-none-match")
            if wanted is not None:
                tags = _entity_tags("If-None-Match", wanted)
                # Weak comparison (RFC 9110 section 13.1.2): W/"3" matches "3".
                if tags == "*" or any(tag == str(order.version) for _, tag in tags):
                    return respond(304, None, "not_modified", ETag=entity_tag(order.version), **{"Cache-Control": _REVALIDATE})
            return _order_reply(respond, 200, order, "read", **{"Cache-Control": _REVALIDATE})
        then = await store.load(order_id, ORDER_PROJECTION, up_to_version=as_of if isinstance(as_of, int) else None,
                                as_of=as_of if isinstance(as_of, datetime) else None)
        if then.state is None or then.state.deleted or (isinstance(as_of, int) and as_of > order.version):
            raise Problem(404, "not-found", "The order did not exist at that point.", reason="not_found")
        return respond(200, then.state.to_json(), "read_as_of")

    async def write(respond: Responder, principal: Principal) -> Reply:
        cfg = read_settings()
        tenant = _tenant_of(principal)
        order_id = _order_id(request)
        tags = _required_if_match(request)
        body: Any = None
        if request.method == "PUT":
            body = _read_body(request, cfg, ("application/json",))
        elif request.method == "PATCH":
            body = _read_body(request, cfg, (MERGE_PATCH,))
            if not isinstance(body, dict):
                raise InvalidOrder([{"pointer": "", "detail": "must be a JSON object (RFC 7396)"}],
                                   "A merge patch must be a JSON object.")
        store_services = services(cfg)
        loaded = await _live_order(store_services, order_id, tenant)
        order = loaded.state
        assert order is not None
        _check_if_match(tags, order)
        metadata = _metadata(principal, respond, invocation_id)
        if request.method == "DELETE":
            events = decide_delete(order, metadata)
        else:
            source = body if request.method == "PUT" else merge_patch(order.writable_json(), body)
            events = decide_change(order, read_order(source, max_lines=cfg.max_lines), metadata)
        if not events:
            return _order_reply(respond, 200, order, "unchanged")
        try:
            after = await store_services.store.append(order_id, events, expected_version=order.version,
                                                      command_id=f"request:{invocation_id}", projection=ORDER_PROJECTION,
                                                      state=order)
        except WrongExpectedVersion:
            latest = await store_services.store.load(order_id, ORDER_PROJECTION)
            raise _stale(latest.version) from None
        respond.log.info("order.changed", orderId=order_id, version=after.version, events=[e.type for e in events])
        if request.method == "DELETE":
            return respond(204, None, "deleted")
        assert after.state is not None
        return _order_reply(respond, 200, after.state, "changed")

    operation = {"GET": "order.read", "PUT": "order.replace", "PATCH": "order.patch", "DELETE": "order.delete"}
    return await _serve(request, operation.get(request.method, "order"), invocation_id=invocation_id, log=log,
                        access=READ if reading else WRITE, callers=callers, work=read if reading else write)


async def order_events(request: OrderRequest, *, invocation_id: str, log: InvocationLog,
                       services: Callable[[OrdersSettings], OrderServices], read_settings: Callable[[], OrdersSettings],
                       callers: Callable[[RouteAccess], CallerCheck]) -> Reply:
    """``GET /api/orders/{id}/events?after=&maxPageSize=``: the order's events in order, paged."""

    async def work(respond: Responder, principal: Principal) -> Reply:
        cfg = read_settings()
        tenant = _tenant_of(principal)
        order_id = _order_id(request)
        after = _int_query(request, "after", 0, 0, 10**9)
        size = _int_query(request, "maxPageSize", cfg.max_page_size, 1, cfg.max_page_size)
        store_services = services(cfg)
        await _live_order(store_services, order_id, tenant, include_deleted=_is_admin(principal))
        events = await store_services.store.events(order_id, after=after, limit=size + 1)
        page = events[:size]
        body: dict[str, Any] = {"value": [{"version": e.version, "type": e.type, "schemaVersion": e.schema_version,
                                           "data": e.data, "recordedAt": e.recorded_at,
                                           "metadata": {k: e.metadata[k] for k in ("actor", "correlationId", "causationId")
                                                        if k in e.metadata}} for e in page]}
        if len(events) > size:
            parts = urlsplit(request.url)
            base = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
            body["nextLink"] = f"{base}/api/orders/{order_id}/events?after={page[-1].version}&maxPageSize={size}"
        return respond(200, body, "history")

    return await _serve(request, "order.events", invocation_id=invocation_id, log=log, access=READ, callers=callers,
                        work=work)


def order_services(cfg: OrdersSettings) -> OrderServices:
    """The store and the key records over the app's Cosmos DB connection (``CosmosConnection``)."""
    from common import clients

    events = clients.cosmos_container(container=cfg.events_container)
    keys = clients.cosmos_container(container=cfg.idempotency_container)
    return OrderServices(EventStore(events, upcasters=UPCASTERS, snapshot_every=cfg.snapshot_every,
                                    budget_seconds=cfg.store_budget_seconds),
                         IdempotencyKeys(keys, ttl_hours=cfg.idempotency_hours, budget_seconds=cfg.store_budget_seconds))
