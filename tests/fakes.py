"""Fakes of Azure clients for unit tests. Each raises the SDK's own exception types
with the status codes the real service answers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class FakeSecret:
    name: str
    value: str | None


class FakeSecretClient:
    """Behaves as ``azure.keyvault.secrets.aio.SecretClient.get_secret``: 404 -> ResourceNotFoundError."""

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.secrets = dict(secrets or {})
        self.calls = 0
        self.error: Exception | None = None
        self.delay = 0.0

    async def get_secret(self, name: str, version: str | None = None) -> FakeSecret:
        from azure.core.exceptions import ResourceNotFoundError

        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        if name not in self.secrets:
            raise ResourceNotFoundError(f"(SecretNotFound) A secret with (name/id) {name} was not found in this key vault.")
        return FakeSecret(name, self.secrets[name])

    async def fetch(self, name: str) -> str | None:
        """What ``common.secrets`` reads from the vault: the value, or None for a missing secret."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return (await self.get_secret(name)).value
        except ResourceNotFoundError:
            return None

    async def close(self) -> None:
        pass


class FakeClock:
    """A monotonic clock that moves only when told to, or when ``sleep`` is awaited."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Scripted:
    """An async operation that raises each scripted error in turn, then returns ``result``."""

    def __init__(self, *errors: BaseException, result: object = None) -> None:
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


class FakeQueue:
    """A Service Bus queue: keeps what was sent; with duplicate detection on, drops a message
    whose ``message_id`` was already accepted (as the service does within its detection window)."""

    def __init__(self, name: str, duplicate_detection: bool = True) -> None:
        self.name = name
        self.duplicate_detection = duplicate_detection
        self.messages: list = []
        self._seen: set[str] = set()

    def accept(self, message) -> None:  # noqa: ANN001 - azure.servicebus.ServiceBusMessage
        if self.duplicate_detection and message.message_id in self._seen:
            return
        self._seen.add(message.message_id)
        self.messages.append(message)


class FakeSender:
    """Behaves as ``azure.servicebus.aio.ServiceBusSender``: ``send_messages`` takes a message
    or a list, and failures are the SDK's own exception types, scripted per call."""

    def __init__(self, queue: FakeQueue) -> None:
        self.queue = queue
        self.attempts = 0
        self.failures: list[BaseException] = []
        self.hang = False
        self.closed = False

    async def send_messages(self, message, **kwargs) -> None:  # noqa: ANN001
        from azure.servicebus import ServiceBusMessage

        self.attempts += 1
        if self.closed:
            raise ValueError("The handler has already been shutdown. Please use ServiceBusClient to create a new instance.")
        if self.hang:
            await asyncio.sleep(3600)
        if self.failures:
            raise self.failures.pop(0)
        batch = message if isinstance(message, list) else [message]
        for item in batch:
            if not isinstance(item, ServiceBusMessage):
                raise TypeError("Only ServiceBusMessage, ServiceBusMessageBatch or a list of them can be sent.")
            self.queue.accept(item)

    async def close(self) -> None:
        self.closed = True


class FakeServiceBus:
    """A namespace of fake queues; ``sender_for(queue)`` plays ``common.clients.queue_sender``."""

    def __init__(self, *queue_names: str) -> None:
        self.queues = {name: FakeQueue(name) for name in queue_names}
        self.senders = {name: FakeSender(queue) for name, queue in self.queues.items()}

    def sender_for(self, queue_name: str) -> FakeSender:
        from azure.servicebus.exceptions import MessagingEntityNotFoundError

        if queue_name not in self.senders:
            raise MessagingEntityNotFoundError(message=f"The messaging entity '{queue_name}' could not be found.")
        return self.senders[queue_name]


class FakeHttpResponse:
    """Just enough of an azure.core HTTP response for the SDK's exception types."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}
        self.reason = {404: "Not Found", 429: "Too Many Requests", 413: "Request Entity Too Large",
                       400: "Bad Request", 503: "Service Unavailable"}.get(status_code, "Error")
        self.content_type = "application/json"

    def text(self, encoding: str | None = None) -> str:
        return ""


def cosmos_error(status: int, message: str = "", retry_after_ms: int | None = None):  # noqa: ANN201
    """The exception the Cosmos SDK raises for ``status`` (404 has its own subclass)."""
    from azure.cosmos import exceptions

    headers = {"x-ms-retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
    response = FakeHttpResponse(status, headers)
    if status == 404:
        return exceptions.CosmosResourceNotFoundError(status_code=404, message=message or "Entity with the specified id does not exist in the system.", response=response)
    return exceptions.CosmosHttpResponseError(status_code=status, message=message or f"status {status}", response=response)


class FakeContainer:
    """Behaves as ``azure.cosmos.aio.ContainerProxy`` for what the app uses.

    - ``read()`` returns properties with the partition key definition;
    - ``upsert_item`` replaces by (id, partition key value); ``response_hook`` gets the charge;
    - ``delete_item`` raises ``CosmosResourceNotFoundError`` (404) for a missing item;
    - ``query_items(...).by_page()`` pages like the service: a page holds at most
      ``max_item_count`` results and continues after the last one returned, so deleting
      returned items does not make the next page skip any. It understands the
      projections and the ``<`` filter the app's queries use.
      A projection of a path the item lacks is left out of the result, as the service leaves
      out ``undefined``; ``<`` between different types is undefined, so it selects nothing.
    - ``failures`` scripts errors (for example 429 with a retry-after) per operation name.
    - ``hang_after[name] = n``: after ``n`` answered calls, that operation (``read``, ``query``
      for a page fetch, ``delete``, ``upsert``) never answers, as over a stalled connection;
      only cancelling ends it. ``hanging`` is how many calls hang right now, ``abandoned`` how
      many hung calls were cancelled.
    """

    def __init__(self, partition_key_paths: tuple[str, ...] = ("/id",), container_id: str = "records") -> None:
        self.id = container_id
        self.database_link = "dbs/fake"
        self.paths = partition_key_paths
        self.items: dict[tuple[str, str], dict] = {}
        self._rids: dict[tuple[str, str], int] = {}
        self._next_rid = 0
        self.failures: dict[str, list[BaseException]] = {"upsert": [], "delete": [], "query": [], "read": []}
        self.calls: dict[str, int] = {"upsert": 0, "delete": 0, "query": 0, "read": 0}
        self.hang_after: dict[str, int] = {}
        self.hanging = 0
        self.abandoned = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        #: Earlier writes take longer than later ones, so concurrent writes finish in reverse order.
        self.out_of_order = False
        self.charge = 5.0

    async def read(self, **kwargs) -> dict:  # noqa: ANN003
        await self._operation("read")
        kind = "MultiHash" if len(self.paths) > 1 else "Hash"
        return {"id": self.id, "partitionKey": {"paths": list(self.paths), "kind": kind, "version": 2}}

    def _key_value(self, item: dict):  # noqa: ANN202
        values = []
        for path in self.paths:
            node = item
            for segment in path.strip("/").split("/"):
                node = node[segment]
            values.append(node)
        return values[0] if len(values) == 1 else values

    @staticmethod
    def _key(item_id: str, value) -> tuple[str, str]:  # noqa: ANN001
        import json

        return item_id, json.dumps(value)

    async def _hang(self) -> None:
        self.hanging += 1
        try:
            await asyncio.Event().wait()  # no answer, ever
        except asyncio.CancelledError:
            self.abandoned += 1
            raise
        finally:
            self.hanging -= 1

    async def _operation(self, name: str) -> None:
        self.calls[name] += 1
        writes = name in ("upsert", "delete")  # in_flight counts writes: a query page may overlap them
        if writes:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if name in self.hang_after and self.calls[name] > self.hang_after[name]:
                await self._hang()
            if self.out_of_order and writes:
                await asyncio.sleep(0.02 / self.calls[name])
            else:
                await asyncio.sleep(self.delay)
        finally:
            if writes:
                self.in_flight -= 1
        if self.failures[name]:
            raise self.failures[name].pop(0)

    async def upsert_item(self, body: dict, response_hook=None, **kwargs) -> dict:  # noqa: ANN001, ANN003
        import copy

        await self._operation("upsert")
        key = self._key(body["id"], self._key_value(body))
        if key not in self._rids:
            self._next_rid += 1
            self._rids[key] = self._next_rid
        self.items[key] = copy.deepcopy(body)
        if response_hook is not None:
            response_hook({"x-ms-request-charge": str(self.charge)}, body)
        return dict(body)

    async def delete_item(self, item, partition_key, response_hook=None, **kwargs) -> None:  # noqa: ANN001, ANN003
        await self._operation("delete")
        item_id = item if isinstance(item, str) else item["id"]
        key = self._key(item_id, partition_key)
        if key not in self.items:
            raise cosmos_error(404)
        del self.items[key]
        del self._rids[key]
        if response_hook is not None:
            response_hook({"x-ms-request-charge": str(self.charge)}, None)

    def query_items(self, query: str, parameters=None, max_item_count=None, **kwargs) -> _FakePaged:  # noqa: ANN001, ANN003
        return _FakePaged(self, query, {p["name"]: p["value"] for p in parameters or []}, max_item_count or 100)


class _FakePaged:
    _PATH = r'c(?:\.\w+|\[\s*"[^"]+"\s*\])+'

    def __init__(self, container: FakeContainer, query: str, parameters: dict, page_size: int) -> None:
        import re

        self.container = container
        self.page_size = page_size
        select = re.match(r"(?is)\s*SELECT\s+(.*?)\s+FROM\s+c\s+WHERE\s+(.*)$", query)
        if not select:
            raise cosmos_error(400, f"fake query parser cannot read: {query}")
        self.projections = [(self._segments(path), alias) for path, alias in
                            re.findall(rf"({self._PATH})\s+AS\s+(\w+)", select.group(1), re.I)]
        self.filters = [(self._segments(path), parameters[f"@{name}"]) for path, name in
                        re.findall(rf"({self._PATH})\s*<\s*@(\w+)", select.group(2))]
        if not self.projections or not self.filters:
            raise cosmos_error(400, f"fake query parser cannot read: {query}")

    @staticmethod
    def _segments(path: str) -> list[str]:
        import re

        return [dotted or quoted for dotted, quoted in re.findall(r'\.(\w+)|\[\s*"([^"]+)"\s*\]', path)]

    _UNDEFINED = object()

    @classmethod
    def _get(cls, item: dict, segments: list[str]):  # noqa: ANN206
        node = item
        for segment in segments:
            if not isinstance(node, dict) or segment not in node:
                return cls._UNDEFINED
            node = node[segment]
        return node

    def _matches(self, item: dict) -> bool:
        for segments, bound in self.filters:
            value = self._get(item, segments)
            # The service orders strings by code point (as Python does) and compares only values
            # of one type: a number or null against a string bound is undefined, never true.
            if self._kind(value) != self._kind(bound) or self._kind(bound) is None or not value < bound:
                return False
        return True

    @staticmethod
    def _kind(value) -> str | None:  # noqa: ANN001
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, (int, float)):
            return "number"
        return "string" if isinstance(value, str) else None

    def _project(self, item: dict) -> dict:
        projected = ((alias, self._get(item, segments)) for segments, alias in self.projections)
        return {alias: value for alias, value in projected if value is not self._UNDEFINED}

    async def _pages(self):  # noqa: ANN202
        last_rid = 0
        while True:
            await self.container._operation("query")
            candidates = sorted((rid, key) for key, rid in self.container._rids.items() if rid > last_rid)
            page = []
            for rid, key in candidates:
                item = self.container.items[key]
                if self._matches(item):
                    page.append(self._project(item))
                    last_rid = rid
                    if len(page) == self.page_size:
                        break
            if not page:
                return
            yield _FakePage(page)
            if len(page) < self.page_size:
                return

    def by_page(self, continuation_token=None):  # noqa: ANN001, ANN201
        return self._pages()


class _FakePage:
    def __init__(self, results: list) -> None:
        self._results = results

    def __aiter__(self):  # noqa: ANN204
        async def gen():  # noqa: ANN202
            for result in self._results:
                yield result
        return gen()


def event_grid_error(status: int, message: str = "", retry_after: str | None = None):  # noqa: ANN201
    """What ``EventGridPublisherClient.send`` raises for ``status``, as azure-eventgrid 4.x does:
    ``ClientAuthenticationError`` for 401, ``ResourceNotFoundError`` (re-raised without a status,
    from the original) for 404, ``HttpResponseError`` with the status for the rest (403, 413,
    429 and 503 included). tests/test_publish_event.py checks these against the real client."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

    response = FakeHttpResponse(status, {"Retry-After": retry_after} if retry_after else {})
    if status == 401:
        return ClientAuthenticationError(message=message or "Unauthorized", response=response)
    if status == 404:
        try:
            raise ResourceNotFoundError(message=message or "Not Found", response=response)
        except ResourceNotFoundError as original:
            error = ResourceNotFoundError("Resource not found. For Event Grid Basic, do not specify the "
                                          "namespace_topic name.")
            error.__cause__ = original
            return error
    return HttpResponseError(message=message or f"Operation returned an invalid status '{response.reason}'",
                             response=response)


class FakeEventGridPublisher:
    """Behaves as ``azure.eventgrid.aio.EventGridPublisherClient.send`` for one CloudEvent.

    ``published`` holds each accepted event as the JSON object the SDK sends for it;
    ``failures`` scripts errors per call (see :func:`event_grid_error`); ``hang`` makes a
    call never answer (only cancelling ends it); ``calls`` counts attempts.
    """

    def __init__(self) -> None:
        self.published: list[dict] = []
        self.failures: list[BaseException] = []
        self.hang = False
        self.calls = 0

    async def send(self, events, **kwargs) -> None:  # noqa: ANN001, ANN003
        from azure.core.messaging import CloudEvent
        from azure.eventgrid._legacy._helpers import _cloud_event_to_generated

        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.failures:
            raise self.failures.pop(0)
        for event in events if isinstance(events, list) else [events]:
            assert isinstance(event, CloudEvent)
            self.published.append(_cloud_event_to_generated(event).serialize())

    async def close(self) -> None:
        pass
