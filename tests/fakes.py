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

    async def close(self) -> None:
        pass


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
