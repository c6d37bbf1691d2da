"""One cached factory per Azure client, identity-based in Azure, connection strings locally.

Every function gets its clients here, never by constructing them::

    from common import clients

    container = clients.cosmos_container()          # CosmosConnection, COSMOS_DATABASE/CONTAINER
    sender = clients.queue_sender("orders-out")      # ServiceBusConnection
    blobs = clients.blob_service_client("EtlStorage")
    work = clients.storage_queue("etl-work")         # EtlStorage's Queue service
    vault = clients.secret_client()                  # KEY_VAULT_URL
    topic = clients.event_grid_publisher()           # EVENT_GRID_TOPIC_ENDPOINT

A client is built on first use, on the running event loop, and reused by
every later invocation on that loop (see :mod:`common.loop_cache`). The SDK
imports happen inside the builders, so importing a function module costs no
SDK import. Each connection is named like a Functions binding connection and
read by :mod:`common.settings`: ``<Name>`` holds a connection string
(emulators), or ``<Name>__fullyQualifiedNamespace`` / ``__accountEndpoint`` /
``__blobServiceUri`` / ``__queueServiceUri`` / ``__accountName`` select the identity-based form.
TLS verification is relaxed only for loopback hosts (local emulators with
self-signed certificates).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from common import loop_cache, settings
from common.credential import get_credential
from common.throttle import ThrottleSignal

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy, CosmosClient
    from azure.eventgrid.aio import EventGridPublisherClient
    from azure.keyvault.secrets.aio import SecretClient
    from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
    from azure.storage.blob.aio import BlobServiceClient
    from azure.storage.queue.aio import QueueClient

__all__ = [
    "blob_service_client",
    "close_all",
    "cosmos_client",
    "cosmos_container",
    "cosmos_throttle_signal",
    "discard_queue_sender",
    "event_grid_publisher",
    "queue_sender",
    "secret_client",
    "service_bus_client",
    "storage_queue",
]

#: Timeouts (seconds) for establishing a connection and for reading a response.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 30


def _is_loopback_url(url: str) -> bool:
    return settings.is_loopback_host(urlsplit(url).hostname)


def http_transport(*, verify: bool = True) -> Any:
    """The HTTP transport of each HTTP-based client (Cosmos DB, Blob storage, Key Vault, Event Grid).

    azure-core's aiohttp transport trusts the environment by default: aiohttp then looks up
    proxy settings and ``~/.netrc`` on a thread-pool hop for every request, which doubled the
    client CPU of an upsert here (docs/benchmarks.md). So the lookups are off unless
    ``HTTP_PROXY_FROM_ENVIRONMENT=true`` (behind a proxy set by ``HTTPS_PROXY``/``NO_PROXY``).
    Each client gets its own transport and closes it with itself.
    """
    from azure.core.pipeline.transport import AioHttpTransport

    use_env = settings.network_settings().proxy_from_environment
    return AioHttpTransport(use_env_settings=use_env, connection_verify=verify,
                            connection_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)


def throttle_hook(signal: ThrottleSignal) -> Callable[[Any], None]:
    """A ``raw_response_hook`` (azure-core's ``CustomHookPolicy``) that counts every 429 response.

    Given to the Cosmos client, it sees each HTTP try, the SDK's own throttle retries included:
    those run above the pipeline, one pipeline run per try. The Cosmos client builds its own
    pipeline and ignores ``per_call_policies``, so a policy there would never run. A call that
    passes its own ``raw_response_hook`` replaces this one for that call; the app never does.
    """

    def hook(response: Any) -> None:
        if response.http_response.status_code == 429:
            signal.throttled()

    return hook


# ---------------------------------------------------------------- Key Vault

def secret_client() -> SecretClient:
    """Key Vault secrets client for ``KEY_VAULT_URL`` (which must be set)."""
    return loop_cache.get_or_build(("keyvault",), _build_secret_client)


def _build_secret_client() -> SecretClient:
    from azure.keyvault.secrets.aio import SecretClient

    url = settings.secret_settings().key_vault_url
    if url is None:
        raise settings.ConfigurationError("KEY_VAULT_URL", "is not set; set it to a vault URL such as 'https://my-vault.vault.azure.net/'.")
    kwargs: dict[str, Any] = {"connection_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT}
    local = _is_loopback_url(url)
    if local:
        # A local stub of the vault: self-signed certificate, token audience is not a vault domain.
        kwargs.update(connection_verify=False, verify_challenge_resource=False)
    return SecretClient(url, credential=get_credential(), transport=http_transport(verify=not local), **kwargs)


# -------------------------------------------------------------- Service Bus

def service_bus_client(connection: str = "ServiceBusConnection") -> ServiceBusClient:
    """Service Bus client for the named connection."""
    return loop_cache.get_or_build(("servicebus", connection), lambda: _build_service_bus_client(connection))


def _build_service_bus_client(connection: str) -> ServiceBusClient:
    from azure.servicebus.aio import ServiceBusClient

    conn = settings.service_bus_connection(connection)
    # The SDK's own retries are switched off: callers retry whole sends with
    # common.retry under a budget below the message lock, so one loop owns
    # the timing and an unreachable namespace cannot stall an invocation.
    kwargs: dict[str, Any] = {"retry_total": 0}
    if conn.connection_string is not None:
        return ServiceBusClient.from_connection_string(conn.connection_string, **kwargs)
    assert conn.endpoint is not None
    return ServiceBusClient(conn.endpoint, credential=get_credential(), **kwargs)


def queue_sender(queue_name: str, connection: str = "ServiceBusConnection") -> ServiceBusSender:
    """A sender for ``queue_name``, shared by every invocation."""
    return loop_cache.get_or_build(
        ("servicebus-sender", connection, queue_name),
        lambda: service_bus_client(connection).get_queue_sender(queue_name),
    )


def discard_queue_sender(queue_name: str, connection: str = "ServiceBusConnection") -> None:
    """Drop a sender whose link may be half-open (after a cancelled send); it is closed in the
    background and the next :func:`queue_sender` call builds a new one."""
    loop_cache.discard_soon(("servicebus-sender", connection, queue_name))


# ---------------------------------------------------------------- Cosmos DB

def cosmos_client(connection: str = "CosmosConnection") -> CosmosClient:
    """Cosmos DB client for the named connection."""
    return loop_cache.get_or_build(("cosmos", connection), lambda: _build_cosmos_client(connection))


def _build_cosmos_client(connection: str) -> CosmosClient:
    from azure.cosmos.aio import CosmosClient

    conn = settings.cosmos_connection(connection)
    endpoint = conn.endpoint or settings.connection_string_parts(conn.connection_string or "").get("accountendpoint", "")
    kwargs: dict[str, Any] = {"connection_timeout": CONNECT_TIMEOUT}
    local = _is_loopback_url(endpoint)
    if local:
        # Local emulators serve a self-signed certificate and one region.
        kwargs.update(connection_verify=False, enable_endpoint_discovery=False)
    kwargs["transport"] = http_transport(verify=not local)
    kwargs["raw_response_hook"] = throttle_hook(cosmos_throttle_signal(connection))
    if conn.connection_string is not None:
        return CosmosClient.from_connection_string(conn.connection_string, **kwargs)
    return CosmosClient(endpoint, credential=get_credential(), **kwargs)


def cosmos_throttle_signal(connection: str = "CosmosConnection") -> ThrottleSignal:
    """The count of 429s the connection's client has received: writers pace themselves by it
    (:class:`common.throttle.AdaptiveConcurrency`)."""
    return loop_cache.get_or_build(("cosmos-throttle", connection), ThrottleSignal)


def cosmos_container(
    connection: str = "CosmosConnection", database: str | None = None, container: str | None = None
) -> ContainerProxy:
    """The container named by ``COSMOS_DATABASE`` / ``COSMOS_CONTAINER`` (or the arguments)."""
    if container is None:
        target = settings.cosmos_target()
        database = database or target.database
        container = target.container
    elif database is None:
        database = settings.cosmos_database()
    return loop_cache.get_or_build(
        ("cosmos-container", connection, database, container),
        lambda: cosmos_client(connection).get_database_client(database).get_container_client(container),
    )


# ------------------------------------------------------------- Blob storage

def blob_service_client(connection: str = "EtlStorage") -> BlobServiceClient:
    """Blob service client for the named storage connection."""
    return loop_cache.get_or_build(("blob", connection), lambda: _build_blob_service_client(connection))


def _build_blob_service_client(connection: str) -> BlobServiceClient:
    from azure.storage.blob.aio import BlobServiceClient

    conn = settings.storage_connection(connection)
    kwargs: dict[str, Any] = {"connection_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT,
                              "transport": http_transport()}
    if conn.connection_string is not None:
        return BlobServiceClient.from_connection_string(conn.connection_string, **kwargs)
    assert conn.endpoint is not None
    return BlobServiceClient(conn.endpoint, credential=get_credential(), **kwargs)


def storage_queue(queue_name: str, connection: str = "EtlStorage") -> QueueClient:
    """A client of the Storage queue ``queue_name``, shared by every invocation.

    Messages are base64 text, the encoding the Functions queue trigger expects by default
    (host.json ``extensions.queues.messageEncoding``).
    """
    return loop_cache.get_or_build(("storage-queue", connection, queue_name),
                                   lambda: _build_storage_queue(connection, queue_name))


def _build_storage_queue(connection: str, queue_name: str) -> QueueClient:
    from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient

    conn = settings.storage_queue_connection(connection)
    kwargs: dict[str, Any] = {"connection_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT,
                              "transport": http_transport(), "message_encode_policy": BinaryBase64EncodePolicy(),
                              "message_decode_policy": BinaryBase64DecodePolicy()}
    if conn.connection_string is not None:
        return QueueClient.from_connection_string(conn.connection_string, queue_name, **kwargs)
    assert conn.endpoint is not None
    return QueueClient(conn.endpoint, queue_name, credential=get_credential(), **kwargs)


# --------------------------------------------------------------- Event Grid

def event_grid_publisher() -> EventGridPublisherClient:
    """Publisher of CloudEvents to the custom topic at ``EVENT_GRID_TOPIC_ENDPOINT``, with the identity.

    The topic has local authentication (access keys, SAS) disabled, so there is no key form.
    The SDK's own retries are off: PublishEvent retries whole publishes under its budget
    (``EVENT_PUBLISH_BUDGET_SECONDS``), so a hung or throttled topic cannot hold the request.
    """
    return loop_cache.get_or_build(("eventgrid",), _build_event_grid_publisher)


def _build_event_grid_publisher() -> EventGridPublisherClient:
    from azure.eventgrid.aio import EventGridPublisherClient

    endpoint = settings.event_settings().topic_endpoint
    if endpoint is None:
        raise settings.ConfigurationError(
            "EVENT_GRID_TOPIC_ENDPOINT", "is not set; set it to the custom topic's endpoint, such as "
            "'https://my-topic.westeurope-1.eventgrid.azure.net/api/events'.")
    # Without namespace_topic the client publishes to a basic (custom) topic, to the endpoint
    # exactly as given (which must end in /api/events).
    return EventGridPublisherClient(endpoint, get_credential(), retry_total=0,
                                    transport=http_transport(verify=not _is_loopback_url(endpoint)))


# ---------------------------------------------------------------- shutdown

async def close_all() -> None:
    """Close every client and the credential built on the running loop."""
    await loop_cache.aclose_all()
