"""Every app setting the function app reads, in typed groups, one per concern.

Each function asks for the group it needs::

    from common import settings

    cfg = settings.cleanup_settings()                        # from the app settings, read once
    cfg = settings.cleanup_settings({"RETENTION_DAYS": "7"})  # from a mapping (tests), not cached
    cfg.retention_days                                        # int, validated

Read from the environment, a group is read once and cached for the life of the
worker process (app settings reach a Functions worker as environment variables
and only change with a restart); :func:`reset_cache` forgets them. A group's
dataclass can also be built directly. A missing or malformed setting raises
:class:`ConfigurationError`, whose message names the setting and says what a
valid value looks like; secret values (connection strings, keys) are never echoed.

Each group declares the names it reads (a read of an undeclared name fails), so
:func:`setting_names` lists every setting from the code itself. The parsers live in
:mod:`common.setting_parsers`, the connections in :mod:`common.connections`, and
host.json's function timeout in :mod:`common.host_config`; policies built on these
values (the cleanup's time budget) live with the function that applies them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, cast

from common.connections import (
    CONNECTION_SUFFIXES,
    DEFAULT_CONNECTIONS,
    Connection,
    ConnectionKind,
    connection_string_parts,
    read_cosmos_connection,
    read_service_bus_connection,
    read_storage_connection,
    read_storage_queue_connection,
)

# Defined with the rest of the error model (common.errors); re-exported where settings are read.
from common.errors import ConfigurationError
from common.host_config import function_timeout_seconds, queue_max_dequeue_count, read_function_timeout
from common.setting_parsers import SettingsReader, https_url, is_loopback_host

__all__ = [
    "ApiKeySettings",
    "AuthMode",
    "AuthSettings",
    "CleanupSettings",
    "ConfigurationError",
    "Connection",
    "CosmosTarget",
    "EtlSettings",
    "EventSettings",
    "IdentitySettings",
    "NetworkSettings",
    "OrdersSettings",
    "PLATFORM_SETTINGS",
    "QueueSettings",
    "SecretSettings",
    "TelemetrySettings",
    "api_key_settings",
    "auth_settings",
    "cleanup_settings",
    "connection_string_parts",
    "cosmos_connection",
    "cosmos_database",
    "cosmos_target",
    "etl_settings",
    "event_settings",
    "function_timeout_seconds",
    "identity_settings",
    "is_loopback_host",
    "local_secret",
    "network_settings",
    "orders_settings",
    "queue_settings",
    "read_function_timeout",
    "reset_cache",
    "secret_settings",
    "service_bus_connection",
    "setting_names",
    "storage_connection",
    "storage_queue_connection",
    "telemetry_settings",
]

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)
Values = Mapping[str, str]


class GroupReader(Protocol[_T_co]):
    """A settings group: from the app settings (cached) or from ``values`` (not cached)."""

    def __call__(self, values: Values | None = None) -> _T_co: ...

#: Group reader name -> the settings it reads.
_DECLARED: dict[str, tuple[str, ...]] = {}
_caches: list[Callable[[], None]] = []
#: Set by the platform, not by the app's owner: read, and listed in docs/settings.md as set by the platform.
PLATFORM_SETTINGS = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT", "WEBSITE_INSTANCE_ID", "WEBSITE_AUTH_ENABLED")
#: Settings that hold a secret locally (KEY_VAULT_URL empty), read through :func:`local_secret`.
_LOCAL_SECRETS = ("API_KEY",)


def _group(*names: str) -> Callable[[Callable[[SettingsReader], _T]], GroupReader[_T]]:
    """Declare a group's settings; the reader it wraps can read only those."""

    def decorate(build: Callable[[SettingsReader], _T]) -> GroupReader[_T]:
        _DECLARED[build.__name__] = names

        @functools.lru_cache(maxsize=1)
        def from_environment() -> _T:
            return build(SettingsReader().restricted(names, build.__name__))

        _caches.append(from_environment.cache_clear)

        def read(values: Values | None = None) -> _T:
            if values is None:
                return from_environment()
            return build(SettingsReader(values).restricted(names, build.__name__))

        read.__name__ = read.__qualname__ = build.__name__
        read.__doc__ = build.__doc__
        return read

    return decorate


def setting_names() -> frozenset[str]:
    """Every setting the app reads: the groups' declarations and the default connections' forms."""
    names = {name for declared in _DECLARED.values() for name in declared} | set(_LOCAL_SECRETS)
    for kind, connection in DEFAULT_CONNECTIONS.items():
        names.update(connection + suffix for suffix in CONNECTION_SUFFIXES[kind])
    return frozenset(names)


def reset_cache() -> None:
    """Forget every group read from the environment so far (for tests that change it)."""
    for clear in _caches:
        clear()
    function_timeout_seconds.cache_clear()
    queue_max_dequeue_count.cache_clear()


# --------------------------------------------------------------------- groups

@dataclass(frozen=True)
class IdentitySettings:
    #: Client id of a user-assigned managed identity; None selects the system-assigned one.
    client_id: str | None
    #: True when the code runs in Azure (App Service / Functions sets these variables).
    in_azure: bool


@_group("AZURE_CLIENT_ID", *PLATFORM_SETTINGS)
def identity_settings(read: SettingsReader) -> IdentitySettings:
    in_azure = any(read.raw(name) for name in PLATFORM_SETTINGS)
    return IdentitySettings(client_id=read.raw("AZURE_CLIENT_ID"), in_azure=in_azure)


@dataclass(frozen=True)
class SecretSettings:
    #: Vault URL; None means local development, where secrets come from app settings.
    key_vault_url: str | None
    #: How long a secret read from the vault is served from memory.
    cache_ttl_seconds: float
    #: How long an expired value may still be served while the vault is unreachable.
    max_stale_seconds: float


@_group("KEY_VAULT_URL", "SECRET_CACHE_TTL_SECONDS", "SECRET_MAX_STALE_SECONDS")
def secret_settings(read: SettingsReader) -> SecretSettings:
    return SecretSettings(
        key_vault_url=read.url("KEY_VAULT_URL", "https://my-vault.vault.azure.net/"),
        cache_ttl_seconds=read.number("SECRET_CACHE_TTL_SECONDS", 300.0),
        max_stale_seconds=read.number("SECRET_MAX_STALE_SECONDS", 3600.0),
    )


def local_secret(setting: str, values: Values | None = None) -> str | None:
    """A secret kept in an app setting, when KEY_VAULT_URL is empty: locally, or in Azure as an App
    Service Key Vault reference, which the platform resolves with the app's identity.

    A reference the platform could not resolve stays in the setting as its literal text; it is
    refused (a :class:`ConfigurationError` naming the setting), never taken as the secret.
    https://learn.microsoft.com/azure/app-service/app-service-key-vault-references
    """
    value = SettingsReader(values).restricted(_LOCAL_SECRETS, "local_secret").raw(setting)
    if value is not None and value.startswith("@Microsoft.KeyVault("):
        raise ConfigurationError(setting, "is a Key Vault reference the platform could not resolve: check the "
                                 "reference, the vault's network rules and the app identity's 'Key Vault Secrets "
                                 "User' role (the portal's Environment variables blade shows the reason).")
    return value


@dataclass(frozen=True)
class ApiKeySettings:
    """The API key that HttpGreeting and PublishEvent check."""

    #: Name of the Key Vault secret that holds the API key.
    api_key_secret_name: str
    #: App setting that holds the API key when KEY_VAULT_URL is empty (local only).
    local_api_key_setting: str


@_group("API_KEY_SECRET_NAME")
def api_key_settings(read: SettingsReader) -> ApiKeySettings:
    name = read.optional("API_KEY_SECRET_NAME", "greeting-api-key")
    if not re.fullmatch(r"[0-9A-Za-z-]{1,127}", name):
        raise ConfigurationError(
            "API_KEY_SECRET_NAME", "must be a Key Vault secret name (letters, digits and dashes), such as 'greeting-api-key'."
        )
    return ApiKeySettings(api_key_secret_name=name, local_api_key_setting="API_KEY")


@dataclass(frozen=True)
class QueueSettings:
    input_queue: str
    #: Where processed results are forwarded; None: results are stored in Cosmos DB only.
    output_queue: str | None
    invalid_queue: str
    #: Attempts for one send, including the first.
    send_max_attempts: int
    #: Total time for one send with its retries; keep it well below the lock duration.
    send_budget_seconds: float
    #: Total time for storing one result in Cosmos DB with its retries.
    store_budget_seconds: float = 20.0


@_group("INPUT_QUEUE_NAME", "OUTPUT_QUEUE_NAME", "INVALID_QUEUE_NAME", "QUEUE_SEND_MAX_ATTEMPTS",
        "QUEUE_SEND_BUDGET_SECONDS", "QUEUE_STORE_BUDGET_SECONDS")
def queue_settings(read: SettingsReader) -> QueueSettings:
    output = read.raw("OUTPUT_QUEUE_NAME")
    return QueueSettings(
        input_queue=read.entity_name("INPUT_QUEUE_NAME", None, "orders-in"),
        output_queue=None if output is None else read.entity_name("OUTPUT_QUEUE_NAME", None, "orders-out"),
        invalid_queue=read.entity_name("INVALID_QUEUE_NAME", None, "orders-invalid"),
        send_max_attempts=read.integer("QUEUE_SEND_MAX_ATTEMPTS", 5, minimum=1, maximum=20),
        send_budget_seconds=read.number("QUEUE_SEND_BUDGET_SECONDS", 20.0, minimum=1.0),
        store_budget_seconds=read.number("QUEUE_STORE_BUDGET_SECONDS", 20.0, minimum=1.0),
    )


@dataclass(frozen=True)
class CosmosTarget:
    database: str
    container: str


@_group("COSMOS_DATABASE")
def cosmos_database(read: SettingsReader) -> str:
    """The database of every container the app uses (COSMOS_CONTAINER's, the orders' containers)."""
    return read.entity_name("COSMOS_DATABASE", None, "serverless")


@_group("COSMOS_DATABASE", "COSMOS_CONTAINER")
def cosmos_target(read: SettingsReader) -> CosmosTarget:
    return CosmosTarget(
        database=read.entity_name("COSMOS_DATABASE", None, "serverless"),
        container=read.entity_name("COSMOS_CONTAINER", None, "records"),
    )


@dataclass(frozen=True)
class EtlSettings:
    input_container: str
    summary_container: str
    #: Cosmos writes in flight at once.
    write_concurrency: int
    #: Records parsed and validated before their writes start (bounds memory).
    batch_size: int
    #: Time budget for one write with its retries.
    write_budget_seconds: float
    #: Share of invalid records (percent) above which a blob's status is ``failed`` even though its
    #: valid records landed; 100 tolerates any share (then only a blob with no valid record fails).
    max_invalid_percent: float = 100.0
    #: Blobs up to this size are processed in the invocation that saw them; larger ones fan out.
    inline_max_bytes: int = 1024 * 1024
    #: A segment of a fanned-out blob holds at most this many records ...
    segment_records: int = 5000
    #: ... and at most this many bytes (a single longer record makes a segment of its own).
    segment_bytes: int = 4 * 1024 * 1024
    #: The Storage queue of split and segment work (BlobEtlWorker's trigger); its poison queue is
    #: ``<name>-poison``.
    work_queue: str = "etl-work"


#: A segment message names byte ranges; one segment is read whole by its worker, so its size is capped.
MAX_SEGMENT_BYTES = 64 * 1024 * 1024


@_group("ETL_INPUT_CONTAINER", "ETL_SUMMARY_CONTAINER", "ETL_WRITE_CONCURRENCY", "ETL_BATCH_SIZE",
        "ETL_WRITE_BUDGET_SECONDS", "ETL_MAX_INVALID_PERCENT", "ETL_INLINE_MAX_BYTES", "ETL_SEGMENT_RECORDS",
        "ETL_SEGMENT_BYTES", "ETL_WORK_QUEUE")
def etl_settings(read: SettingsReader) -> EtlSettings:
    max_invalid = read.number("ETL_MAX_INVALID_PERCENT", 100.0, minimum=0.0)
    if max_invalid > 100:
        raise ConfigurationError("ETL_MAX_INVALID_PERCENT", f"must be a percentage from 0 to 100 (for example 5); "
                                 f"got {max_invalid:g}.")
    return EtlSettings(
        input_container=read.entity_name("ETL_INPUT_CONTAINER", "incoming", "incoming"),
        summary_container=read.entity_name("ETL_SUMMARY_CONTAINER", "summaries", "summaries"),
        write_concurrency=read.integer("ETL_WRITE_CONCURRENCY", 32, minimum=1, maximum=512),
        batch_size=read.integer("ETL_BATCH_SIZE", 500, minimum=1, maximum=100_000),
        write_budget_seconds=read.number("ETL_WRITE_BUDGET_SECONDS", 60.0, minimum=1.0),
        max_invalid_percent=max_invalid,
        inline_max_bytes=read.integer("ETL_INLINE_MAX_BYTES", 1024 * 1024, minimum=0),
        segment_records=read.integer("ETL_SEGMENT_RECORDS", 5000, minimum=1, maximum=1_000_000),
        segment_bytes=read.integer("ETL_SEGMENT_BYTES", 4 * 1024 * 1024, minimum=1024, maximum=MAX_SEGMENT_BYTES),
        work_queue=_queue_name(read, "ETL_WORK_QUEUE", "etl-work"),
    )


def _queue_name(read: SettingsReader, name: str, default: str) -> str:
    """A Storage queue name: 3-63 lowercase letters, digits and single hyphens, starting and ending
    with a letter or digit; ``-poison`` (7 characters) must still fit after it."""
    value = (read.raw(name) or default).strip()
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,55}", value):
        raise ConfigurationError(name, "must be a Storage queue name of 3-56 lowercase letters, digits and single "
                                       f"hyphens, starting and ending with a letter or digit (for example '{default}'); "
                                       "the host adds '-poison' for its poison queue.")
    return value


#: Event Grid's limit on one event (and on one publish request): 1 MB, which cannot be raised.
#: https://learn.microsoft.com/azure/event-grid/quotas-limits
EVENT_GRID_MAX_EVENT_BYTES = 1024 * 1024
#: An HTTP-triggered function must answer within 230 seconds, whatever functionTimeout says
#: (the Azure load balancer's idle timeout).
#: https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout
HTTP_RESPONSE_LIMIT_SECONDS = 230.0
_TOPIC_ENDPOINT_EXAMPLE = "https://my-topic.westeurope-1.eventgrid.azure.net/api/events"


@dataclass(frozen=True)
class EventSettings:
    #: The custom topic's endpoint (``.../api/events``); None: PublishEvent cannot publish.
    topic_endpoint: str | None
    #: Largest event (serialized CloudEvent) PublishEvent accepts; larger ones get a 413.
    max_event_bytes: int
    #: Total time for one publish with its retries, well below the HTTP response limit.
    publish_budget_seconds: float


@_group("EVENT_GRID_TOPIC_ENDPOINT", "EVENT_MAX_BYTES", "EVENT_PUBLISH_BUDGET_SECONDS")
def event_settings(read: SettingsReader) -> EventSettings:
    endpoint = read.url("EVENT_GRID_TOPIC_ENDPOINT", _TOPIC_ENDPOINT_EXAMPLE)
    if endpoint is not None:
        endpoint = endpoint.rstrip("/")
        if not endpoint.endswith("/api/events"):
            raise ConfigurationError("EVENT_GRID_TOPIC_ENDPOINT", "must be the custom topic's endpoint, ending in "
                                     f"'/api/events', such as {_TOPIC_ENDPOINT_EXAMPLE!r}.")
    budget = read.number("EVENT_PUBLISH_BUDGET_SECONDS", 10.0, minimum=1.0)
    if budget > HTTP_RESPONSE_LIMIT_SECONDS / 2:
        raise ConfigurationError("EVENT_PUBLISH_BUDGET_SECONDS", f"must be at most {HTTP_RESPONSE_LIMIT_SECONDS / 2:g} "
                                 f"seconds: an HTTP function must answer within {HTTP_RESPONSE_LIMIT_SECONDS:g} s.")
    return EventSettings(
        topic_endpoint=endpoint,
        max_event_bytes=read.integer("EVENT_MAX_BYTES", EVENT_GRID_MAX_EVENT_BYTES, minimum=1024,
                                     maximum=EVENT_GRID_MAX_EVENT_BYTES),
        publish_budget_seconds=budget,
    )


AuthMode = Literal["entra", "easyauth", "apikey"]
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_AUDIENCE_EXAMPLE = "api://serverless-patterns,00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class AuthSettings:
    """Who may call the HTTP routes: Microsoft Entra ID bearer tokens (``entra``), App Service
    Authentication's principal header (``easyauth``), or the API key alone (``apikey``, local)."""

    mode: AuthMode
    #: The tenant whose tokens are accepted (``entra``).
    tenant_id: str | None
    #: Accepted ``aud`` values: the app ID URI and the client id (v2 tokens carry the client id).
    audiences: tuple[str, ...]
    #: Accepted ``tid`` values; None: any tenant whose token otherwise validates.
    allowed_tenants: frozenset[str] | None
    #: Accepted ``iss`` values: the tenant's v1 and v2 issuers, unless AUTH_ISSUER replaces them.
    issuers: tuple[str, ...]
    #: Where the signing keys are published: the tenant's JWKS, unless AUTH_JWKS_URL replaces it.
    jwks_urls: tuple[str, ...]


def _guid(name: str, value: str) -> str:
    if not _GUID.fullmatch(value):
        raise ConfigurationError(name, "must be a tenant id, a GUID such as '72f988bf-86f1-41af-91ab-2d7cd011db47'.")
    return value.lower()


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@_group("AUTH_MODE", "AUTH_TENANT_ID", "AUTH_AUDIENCE", "AUTH_ALLOWED_TENANTS", "AUTH_ISSUER", "AUTH_JWKS_URL",
        "WEBSITE_AUTH_ENABLED")
def auth_settings(read: SettingsReader) -> AuthSettings:
    mode = read.optional("AUTH_MODE", "entra").lower()
    if mode not in ("entra", "easyauth", "apikey"):
        raise ConfigurationError("AUTH_MODE", f"must be 'entra', 'easyauth' or 'apikey'; got {mode[:40]!r}.")
    allowed = read.raw("AUTH_ALLOWED_TENANTS")
    allowed_tenants = (frozenset(_guid("AUTH_ALLOWED_TENANTS", tid) for tid in _csv(allowed))
                       if allowed is not None else None)
    if mode == "easyauth" and (read.raw("WEBSITE_AUTH_ENABLED") or "").lower() != "true":
        # Without App Service Authentication in front, X-MS-CLIENT-PRINCIPAL is whatever the caller sent.
        raise ConfigurationError("AUTH_MODE", "is 'easyauth', but App Service Authentication is off "
                                 "(WEBSITE_AUTH_ENABLED is not 'True'): turn it on (enableEasyAuth) or use 'entra'.")
    if mode != "entra":
        return AuthSettings(cast(AuthMode, mode), None, (), allowed_tenants, (), ())
    tenant = _guid("AUTH_TENANT_ID", read.required("AUTH_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"))
    audiences = _csv(read.required("AUTH_AUDIENCE", _AUDIENCE_EXAMPLE))
    if not audiences:
        raise ConfigurationError("AUTH_AUDIENCE", f"must list at least one audience, such as {_AUDIENCE_EXAMPLE!r}.")
    issuers = _csv(read.raw("AUTH_ISSUER"))
    for issuer in issuers:
        https_url("AUTH_ISSUER", issuer, f"https://login.microsoftonline.com/{tenant}/v2.0")
    jwks = read.url("AUTH_JWKS_URL", f"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys")
    return AuthSettings(
        mode="entra",
        tenant_id=tenant,
        audiences=audiences,
        allowed_tenants=allowed_tenants,
        # v1 tokens (accessTokenAcceptedVersion null or 1) and v2 tokens name their issuer differently:
        # https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference
        issuers=issuers or (f"https://sts.windows.net/{tenant}/", f"https://login.microsoftonline.com/{tenant}/v2.0"),
        # v1 and v2 metadata publish their keys at two addresses; both are read and merged.
        jwks_urls=(jwks.rstrip("/"),) if jwks else (
            f"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys",
            f"https://login.microsoftonline.com/{tenant}/discovery/keys"),
    )


@dataclass(frozen=True)
class OrdersSettings:
    #: The event store's container (partition key ``/streamId``): the orders' source of truth.
    events_container: str
    #: Idempotency-Key records (partition key ``/id``, time to live on).
    idempotency_container: str
    #: A snapshot of an order is written with every N-th event; 0 turns snapshots off.
    snapshot_every: int
    #: How long an Idempotency-Key is remembered.
    idempotency_hours: float
    #: The largest request body accepted (413 beyond).
    max_body_bytes: int
    #: The most lines one order may hold.
    max_lines: int
    #: Time for one read or append of the event store, retries of throttling included (then 503).
    store_budget_seconds: float
    #: The largest page of GET /api/orders/{id}/events.
    max_page_size: int


@_group("ORDERS_EVENTS_CONTAINER", "ORDERS_IDEMPOTENCY_CONTAINER", "ORDERS_SNAPSHOT_EVERY", "ORDERS_IDEMPOTENCY_HOURS",
        "ORDERS_MAX_BODY_BYTES", "ORDERS_MAX_LINES", "ORDERS_STORE_BUDGET_SECONDS", "ORDERS_MAX_PAGE_SIZE")
def orders_settings(read: SettingsReader) -> OrdersSettings:
    budget = read.number("ORDERS_STORE_BUDGET_SECONDS", 5.0, minimum=0.5)
    if budget * 3 >= HTTP_RESPONSE_LIMIT_SECONDS:
        raise ConfigurationError("ORDERS_STORE_BUDGET_SECONDS", f"must leave a request (up to three store calls) "
                                 f"inside the {HTTP_RESPONSE_LIMIT_SECONDS:g} s an HTTP function has to answer; "
                                 f"got {budget:g}.")
    return OrdersSettings(
        events_container=read.entity_name("ORDERS_EVENTS_CONTAINER", "order-events", "order-events"),
        idempotency_container=read.entity_name("ORDERS_IDEMPOTENCY_CONTAINER", "order-idempotency", "order-idempotency"),
        snapshot_every=read.integer("ORDERS_SNAPSHOT_EVERY", 50, minimum=0, maximum=10_000),
        idempotency_hours=read.number("ORDERS_IDEMPOTENCY_HOURS", 24.0, minimum=0.01),
        max_body_bytes=read.integer("ORDERS_MAX_BODY_BYTES", 256 * 1024, minimum=1024, maximum=1024 * 1024),
        max_lines=read.integer("ORDERS_MAX_LINES", 500, minimum=1, maximum=5000),
        store_budget_seconds=budget,
        max_page_size=read.integer("ORDERS_MAX_PAGE_SIZE", 100, minimum=1, maximum=1000),
    )


@dataclass(frozen=True)
class CleanupSettings:
    retention_days: int
    #: Upper bound of deletes in one run; None means no bound.
    max_deletes: int | None
    dry_run: bool
    delete_concurrency: int
    page_size: int
    #: Seconds the whole run may take; None: derived from host.json's functionTimeout by the
    #: cleanup itself (``retention.cleanup.time_budget``), where that policy belongs.
    time_budget_seconds: float | None = None


@_group("RETENTION_DAYS", "CLEANUP_MAX_DELETES", "CLEANUP_DRY_RUN", "CLEANUP_DELETE_CONCURRENCY",
        "CLEANUP_PAGE_SIZE", "CLEANUP_TIME_BUDGET_SECONDS")
def cleanup_settings(read: SettingsReader) -> CleanupSettings:
    max_deletes = read.integer("CLEANUP_MAX_DELETES", 0, minimum=0)
    budget: float | None = None
    if read.raw("CLEANUP_TIME_BUDGET_SECONDS") is not None:
        budget = read.number("CLEANUP_TIME_BUDGET_SECONDS", 0.0, minimum=1.0)
        timeout = function_timeout_seconds()
        if timeout and budget >= timeout:
            raise ConfigurationError(
                "CLEANUP_TIME_BUDGET_SECONDS",
                f"must be below host.json's functionTimeout ({timeout:g} s), leaving time to log and finish; "
                "leave it unset to derive it from the timeout.",
            )
    return CleanupSettings(
        retention_days=read.integer("RETENTION_DAYS", 30, minimum=0, maximum=36500),
        max_deletes=max_deletes or None,
        dry_run=read.boolean("CLEANUP_DRY_RUN", False),
        delete_concurrency=read.integer("CLEANUP_DELETE_CONCURRENCY", 16, minimum=1, maximum=256),
        page_size=read.integer("CLEANUP_PAGE_SIZE", 200, minimum=1, maximum=1000),
        time_budget_seconds=budget,
    )


@dataclass(frozen=True)
class NetworkSettings:
    #: Let the HTTP clients read proxy settings (HTTPS_PROXY, NO_PROXY) and ~/.netrc from the
    #: environment, which aiohttp does on every request; off by default (see common.clients).
    proxy_from_environment: bool


@_group("HTTP_PROXY_FROM_ENVIRONMENT")
def network_settings(read: SettingsReader) -> NetworkSettings:
    return NetworkSettings(proxy_from_environment=read.boolean("HTTP_PROXY_FROM_ENVIRONMENT", False))


@dataclass(frozen=True)
class TelemetrySettings:
    #: Application Insights connection string (an endpoint and an id, not a credential); None: off.
    connection_string: str | None
    #: The Python worker sets up Azure Monitor itself; the app must not do it twice.
    worker_configures_azure_monitor: bool
    #: Print spans and metrics to the console (local development).
    console: bool
    service_name: str


@_group("APPLICATIONINSIGHTS_CONNECTION_STRING", "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "TELEMETRY_CONSOLE",
        "OTEL_SERVICE_NAME")
def telemetry_settings(read: SettingsReader) -> TelemetrySettings:
    return TelemetrySettings(
        connection_string=read.raw("APPLICATIONINSIGHTS_CONNECTION_STRING"),
        worker_configures_azure_monitor=read.boolean("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", False),
        console=read.boolean("TELEMETRY_CONSOLE", False),
        service_name=read.optional("OTEL_SERVICE_NAME", "serverless-patterns"),
    )


# ---------------------------------------------------------------- connections

@functools.lru_cache(maxsize=16)
def _connection_from_environment(kind: ConnectionKind, name: str) -> Connection:
    return _CONNECTION_READERS[kind](SettingsReader(), name)


_caches.append(_connection_from_environment.cache_clear)
_CONNECTION_READERS: dict[ConnectionKind, Callable[[SettingsReader, str], Connection]] = {
    "servicebus": read_service_bus_connection,
    "cosmos": read_cosmos_connection,
    "storage": read_storage_connection,
    "storagequeue": read_storage_queue_connection,
}


def _connection(kind: ConnectionKind, name: str, values: Values | None) -> Connection:
    if values is None:
        return _connection_from_environment(kind, name)
    return _CONNECTION_READERS[kind](SettingsReader(values), name)


def service_bus_connection(name: str = "ServiceBusConnection", values: Values | None = None) -> Connection:
    """The Service Bus connection ``name`` (see :mod:`common.connections`)."""
    return _connection("servicebus", name, values)


def cosmos_connection(name: str = "CosmosConnection", values: Values | None = None) -> Connection:
    """The Cosmos DB connection ``name`` (see :mod:`common.connections`)."""
    return _connection("cosmos", name, values)


def storage_connection(name: str = "EtlStorage", values: Values | None = None) -> Connection:
    """The Blob service of the storage connection ``name`` (see :mod:`common.connections`)."""
    return _connection("storage", name, values)


def storage_queue_connection(name: str = "EtlStorage", values: Values | None = None) -> Connection:
    """The Queue service of the storage connection ``name`` (see :mod:`common.connections`)."""
    return _connection("storagequeue", name, values)
