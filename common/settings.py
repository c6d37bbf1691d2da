"""Every app setting the function app reads, in one place.

Each function asks for the group it needs::

    from common import settings

    cfg = settings.cleanup_settings()
    cfg.retention_days  # int, validated

A group is read from the environment once and cached for the life of the
worker process (app settings reach a Functions worker as environment
variables and only change with a restart). A missing or malformed setting
raises :class:`ConfigurationError`, whose message names the setting and says
what a valid value looks like. Secret values (connection strings, keys) are
never echoed in those messages.

Tests that change the environment call :func:`reset_cache`.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, TypeVar
from urllib.parse import urlsplit

# Defined with the rest of the error model (common.errors); re-exported where settings are read.
from common.errors import ConfigurationError

__all__ = [
    "ConfigurationError",
    "Connection",
    "CleanupSettings",
    "EtlSettings",
    "GreetingSettings",
    "IdentitySettings",
    "QueueSettings",
    "SecretSettings",
    "cleanup_settings",
    "connection_string_parts",
    "cosmos_connection",
    "cosmos_target",
    "etl_settings",
    "function_timeout_seconds",
    "greeting_settings",
    "identity_settings",
    "queue_settings",
    "reset_cache",
    "secret_settings",
    "telemetry_settings",
    "service_bus_connection",
    "storage_connection",
]

APP_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------
# Primitive readers. `secret=True` keeps the value out of error messages.
# --------------------------------------------------------------------------

def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _required(name: str, example: str) -> str:
    value = _raw(name)
    if value is None:
        raise ConfigurationError(name, f"is not set; set it to a value such as {example!r}.")
    return value


def _optional(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def _int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    bounds = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    if not re.fullmatch(r"[+-]?\d+", value):
        raise ConfigurationError(name, f"must be {bounds} (for example {default}); got {_shown(value)}.")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        raise ConfigurationError(name, f"must be {bounds} (for example {default}); got {number}.")
    return number


def _float(name: str, default: float, *, minimum: float = 0.0) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number >= minimum or number == float("inf"):
        raise ConfigurationError(
            name, f"must be a number >= {minimum:g} (for example {default:g}); got {_shown(value)}."
        )
    return number


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(name, f"must be true or false; got {_shown(value)}.")


def _https_url(name: str, value: str, example: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(name, f"must be an absolute URL such as {example!r}.")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(name, f"must use https (http is accepted for localhost only), such as {example!r}.")
    return value.rstrip("/") + "/"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/~]{0,259}$")


def _entity_name(name: str, default: str | None, example: str) -> str:
    value = _required(name, example) if default is None else (_optional(name, default) or default)
    if not _NAME.fullmatch(value):
        raise ConfigurationError(
            name, f"must be a queue, container or database name such as {example!r}; got {_shown(value)}."
        )
    return value


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and loopback addresses, where emulators listen."""
    if not host:
        return False
    host = host.strip("[]").lower()
    return host == "localhost" or host.endswith(".localhost") or host == "::1" or host.startswith("127.")


# --------------------------------------------------------------------------
# Groups of settings, one per concern, each read once.
# --------------------------------------------------------------------------

_T = TypeVar("_T")
_cached: list[functools._lru_cache_wrapper] = []


def _cache(fn: Callable[[], _T]) -> Callable[[], _T]:
    wrapped = functools.lru_cache(maxsize=1)(fn)
    _cached.append(wrapped)
    return wrapped


def _cache_by_name(fn: Callable[[str], _T]) -> Callable[[str], _T]:
    wrapped = functools.lru_cache(maxsize=16)(fn)
    _cached.append(wrapped)
    return wrapped


def reset_cache() -> None:
    """Forget every group read so far (for tests that change the environment)."""
    for fn in _cached:
        fn.cache_clear()


@dataclass(frozen=True)
class IdentitySettings:
    #: Client id of a user-assigned managed identity; None selects the system-assigned one.
    client_id: str | None
    #: True when the code runs in Azure (App Service / Functions sets these variables).
    in_azure: bool


@_cache
def identity_settings() -> IdentitySettings:
    in_azure = any(_raw(v) for v in ("IDENTITY_ENDPOINT", "MSI_ENDPOINT", "WEBSITE_INSTANCE_ID"))
    return IdentitySettings(client_id=_optional("AZURE_CLIENT_ID"), in_azure=in_azure)


@dataclass(frozen=True)
class SecretSettings:
    #: Vault URL; None means local development, where secrets come from app settings.
    key_vault_url: str | None
    #: How long a secret read from the vault is served from memory.
    cache_ttl_seconds: float
    #: How long an expired value may still be served while the vault is unreachable.
    max_stale_seconds: float


@_cache
def secret_settings() -> SecretSettings:
    url = _optional("KEY_VAULT_URL")
    if url is not None:
        url = _https_url("KEY_VAULT_URL", url, "https://my-vault.vault.azure.net/")
    return SecretSettings(
        key_vault_url=url,
        cache_ttl_seconds=_float("SECRET_CACHE_TTL_SECONDS", 300.0),
        max_stale_seconds=_float("SECRET_MAX_STALE_SECONDS", 3600.0),
    )


@dataclass(frozen=True)
class GreetingSettings:
    #: Name of the Key Vault secret that holds the API key.
    api_key_secret_name: str
    #: App setting that holds the API key when KEY_VAULT_URL is empty (local only).
    local_api_key_setting: str


@_cache
def greeting_settings() -> GreetingSettings:
    name = _optional("API_KEY_SECRET_NAME", "greeting-api-key") or "greeting-api-key"
    if not re.fullmatch(r"[0-9A-Za-z-]{1,127}", name):
        raise ConfigurationError(
            "API_KEY_SECRET_NAME", "must be a Key Vault secret name (letters, digits and dashes), such as 'greeting-api-key'."
        )
    return GreetingSettings(api_key_secret_name=name, local_api_key_setting="API_KEY")


def local_secret(setting: str) -> str | None:
    """Read a secret kept in an app setting (local development only)."""
    return _raw(setting)


@dataclass(frozen=True)
class QueueSettings:
    input_queue: str
    output_queue: str
    invalid_queue: str
    #: Attempts for one send, including the first.
    send_max_attempts: int
    #: Total time for one send with its retries; keep it well below the lock duration.
    send_budget_seconds: float


@_cache
def queue_settings() -> QueueSettings:
    return QueueSettings(
        input_queue=_entity_name("INPUT_QUEUE_NAME", None, "orders-in"),
        output_queue=_entity_name("OUTPUT_QUEUE_NAME", None, "orders-out"),
        invalid_queue=_entity_name("INVALID_QUEUE_NAME", None, "orders-invalid"),
        send_max_attempts=_int("QUEUE_SEND_MAX_ATTEMPTS", 5, minimum=1, maximum=20),
        send_budget_seconds=_float("QUEUE_SEND_BUDGET_SECONDS", 20.0, minimum=1.0),
    )


@dataclass(frozen=True)
class CosmosTarget:
    database: str
    container: str


@_cache
def cosmos_target() -> CosmosTarget:
    return CosmosTarget(
        database=_entity_name("COSMOS_DATABASE", None, "serverless"),
        container=_entity_name("COSMOS_CONTAINER", None, "records"),
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


@_cache
def etl_settings() -> EtlSettings:
    return EtlSettings(
        input_container=_entity_name("ETL_INPUT_CONTAINER", "incoming", "incoming"),
        summary_container=_entity_name("ETL_SUMMARY_CONTAINER", "summaries", "summaries"),
        write_concurrency=_int("ETL_WRITE_CONCURRENCY", 32, minimum=1, maximum=512),
        batch_size=_int("ETL_BATCH_SIZE", 500, minimum=1, maximum=100_000),
        write_budget_seconds=_float("ETL_WRITE_BUDGET_SECONDS", 60.0, minimum=1.0),
    )


@dataclass(frozen=True)
class CleanupSettings:
    retention_days: int
    #: Upper bound of deletes in one run; None means no bound.
    max_deletes: int | None
    dry_run: bool
    delete_concurrency: int
    page_size: int
    #: Seconds after which the run stops taking new pages.
    time_budget_seconds: float


@_cache
def cleanup_settings() -> CleanupSettings:
    max_deletes = _int("CLEANUP_MAX_DELETES", 0, minimum=0)
    timeout = function_timeout_seconds()
    default_budget = max(10.0, timeout * 0.8 - 30.0) if timeout else 600.0
    budget = _float("CLEANUP_TIME_BUDGET_SECONDS", default_budget, minimum=1.0)
    if timeout and budget >= timeout:
        raise ConfigurationError(
            "CLEANUP_TIME_BUDGET_SECONDS",
            f"must be below host.json's functionTimeout ({timeout:g} s), for example {default_budget:g}.",
        )
    return CleanupSettings(
        retention_days=_int("RETENTION_DAYS", 30, minimum=0, maximum=36500),
        max_deletes=max_deletes or None,
        dry_run=_bool("CLEANUP_DRY_RUN", False),
        delete_concurrency=_int("CLEANUP_DELETE_CONCURRENCY", 16, minimum=1, maximum=256),
        page_size=_int("CLEANUP_PAGE_SIZE", 200, minimum=1, maximum=1000),
        time_budget_seconds=budget,
    )


@dataclass(frozen=True)
class TelemetrySettings:
    #: Application Insights connection string (an endpoint and an id, not a credential); None: off.
    connection_string: str | None
    #: The Python worker sets up Azure Monitor itself; the app must not do it twice.
    worker_configures_azure_monitor: bool
    #: Print spans and metrics to the console (local development).
    console: bool
    service_name: str


@_cache
def telemetry_settings() -> TelemetrySettings:
    return TelemetrySettings(
        connection_string=_optional("APPLICATIONINSIGHTS_CONNECTION_STRING"),
        worker_configures_azure_monitor=_bool("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", False),
        console=_bool("TELEMETRY_CONSOLE", False),
        service_name=_optional("OTEL_SERVICE_NAME", "serverless-patterns") or "serverless-patterns",
    )


@_cache
def function_timeout_seconds() -> float | None:
    """The app's host.json functionTimeout in seconds; None when unbounded or absent."""
    return read_function_timeout(APP_ROOT / "host.json")


def read_function_timeout(host_json: Path) -> float | None:
    """functionTimeout of the given host.json in seconds; None when unbounded or absent."""
    try:
        data = json.loads(host_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    value = data.get("functionTimeout")
    if value in (None, "-1"):
        return None
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?", str(value))
    if not match:
        raise ConfigurationError("functionTimeout", f"in host.json must look like '00:10:00'; got {value!r}.")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


# --------------------------------------------------------------------------
# Connections, named like Functions binding connections.
# --------------------------------------------------------------------------

ConnectionKind = Literal["servicebus", "cosmos", "storage"]


@dataclass(frozen=True)
class Connection:
    """Where a client connects, and how it authenticates.

    Exactly one of ``connection_string`` (emulators, local development) and
    ``endpoint`` (identity-based, as in Azure) is set.
    """

    name: str
    kind: ConnectionKind
    connection_string: str | None = None
    endpoint: str | None = None

    def __repr__(self) -> str:  # never show a connection string
        how = "connection string" if self.connection_string else f"identity at {self.endpoint}"
        return f"Connection({self.name!r}, {self.kind}, {how})"

    __str__ = __repr__


_SECRET_PARTS = ("accountkey", "sharedaccesskey", "sharedaccesssignature")


def connection_string_parts(value: str) -> dict[str, str]:
    """The ``key=value`` parts; the keys' values are registered for masking in logs and errors."""
    from common.logs import register_secret

    parts: dict[str, str] = {}
    for piece in value.split(";"):
        if "=" in piece:
            key, _, val = piece.partition("=")
            parts[key.strip().lower()] = val.strip()
    for name in _SECRET_PARTS:
        register_secret(parts.get(name))
    return parts


@_cache_by_name
def service_bus_connection(name: str = "ServiceBusConnection") -> Connection:
    conn = _raw(name)
    if conn is not None:
        if "endpoint" not in connection_string_parts(conn):
            raise ConfigurationError(
                name, "must be a Service Bus connection string ('Endpoint=sb://<namespace>/;SharedAccessKeyName=...;...')."
            )
        return Connection(name, "servicebus", connection_string=conn)
    namespace = _raw(f"{name}__fullyQualifiedNamespace")
    if namespace is None:
        raise ConfigurationError(
            f"{name}__fullyQualifiedNamespace",
            f"is not set (nor is '{name}'); set it to a namespace such as 'my-ns.servicebus.windows.net'.",
        )
    host = urlsplit(namespace).hostname if "://" in namespace else namespace.strip("/")
    if not host or not re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?", host):
        raise ConfigurationError(
            f"{name}__fullyQualifiedNamespace", "must be a host name such as 'my-ns.servicebus.windows.net'."
        )
    return Connection(name, "servicebus", endpoint=host)


@_cache_by_name
def cosmos_connection(name: str = "CosmosConnection") -> Connection:
    conn = _raw(name)
    if conn is not None:
        parts = connection_string_parts(conn)
        if "accountendpoint" not in parts or "accountkey" not in parts:
            raise ConfigurationError(
                name, "must be a Cosmos DB connection string ('AccountEndpoint=https://...;AccountKey=...;')."
            )
        return Connection(name, "cosmos", connection_string=conn)
    setting = f"{name}__accountEndpoint"
    endpoint = _raw(setting)
    if endpoint is None:
        raise ConfigurationError(
            setting, f"is not set (nor is '{name}'); set it to an endpoint such as 'https://my-account.documents.azure.com:443/'."
        )
    return Connection(name, "cosmos", endpoint=_https_url(setting, endpoint, "https://my-account.documents.azure.com:443/"))


@_cache_by_name
def storage_connection(name: str = "EtlStorage") -> Connection:
    conn = _raw(name)
    if conn is not None:
        parts = connection_string_parts(conn)
        if not (parts.get("usedevelopmentstorage") == "true" or "accountname" in parts or "blobendpoint" in parts):
            raise ConfigurationError(
                name,
                "must be a storage connection string ('DefaultEndpointsProtocol=https;AccountName=...;...' "
                "or 'UseDevelopmentStorage=true').",
            )
        return Connection(name, "storage", connection_string=conn)
    uri = _raw(f"{name}__blobServiceUri")
    if uri is not None:
        return Connection(name, "storage", endpoint=_https_url(f"{name}__blobServiceUri", uri, "https://myaccount.blob.core.windows.net"))
    account = _raw(f"{name}__accountName")
    if account is not None:
        if not re.fullmatch(r"[a-z0-9]{3,24}", account):
            raise ConfigurationError(f"{name}__accountName", "must be a storage account name (3-24 lowercase letters and digits).")
        return Connection(name, "storage", endpoint=f"https://{account}.blob.core.windows.net/")
    raise ConfigurationError(
        f"{name}__blobServiceUri",
        f"is not set (nor '{name}__accountName' or '{name}'); set it to a URI such as 'https://myaccount.blob.core.windows.net'.",
    )
