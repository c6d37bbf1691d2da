"""Where each client connects: connections named like Functions binding connections.

A connection ``<Name>`` is either a connection string in the app setting ``<Name>``
(emulators, local development) or the identity-based form Azure uses, named by
suffix as the Functions extensions read it::

    ServiceBusConnection__fullyQualifiedNamespace = my-ns.servicebus.windows.net
    CosmosConnection__accountEndpoint             = https://my-account.documents.azure.com:443/
    EtlStorage__blobServiceUri                    = https://myaccount.blob.core.windows.net
    EtlStorage__queueServiceUri                   = https://myaccount.queue.core.windows.net
    EtlStorage__accountName                       = myaccount

The key parts of a connection string are registered for masking the moment they are
read, so they cannot reach a log line; a :class:`Connection` never shows its string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from common.errors import ConfigurationError
from common.setting_parsers import SettingsReader, https_url

__all__ = ["CONNECTION_SUFFIXES", "DEFAULT_CONNECTIONS", "Connection", "ConnectionKind", "connection_string_parts",
           "read_cosmos_connection", "read_service_bus_connection", "read_storage_connection",
           "read_storage_queue_connection"]

#: ``storage`` is a storage account's Blob service, ``storagequeue`` its Queue service (one
#: connection name can serve both, as ``EtlStorage`` does, with one setting per service URI).
ConnectionKind = Literal["servicebus", "cosmos", "storage", "storagequeue"]

#: The setting names of one connection: ``<Name>`` plus these suffixes (the identity-based forms).
CONNECTION_SUFFIXES: dict[ConnectionKind, tuple[str, ...]] = {
    "servicebus": ("", "__fullyQualifiedNamespace"),
    "cosmos": ("", "__accountEndpoint"),
    "storage": ("", "__blobServiceUri", "__accountName"),
    "storagequeue": ("", "__queueServiceUri", "__accountName"),
}
#: The connection each kind uses unless a caller names another.
DEFAULT_CONNECTIONS: dict[ConnectionKind, str] = {
    "servicebus": "ServiceBusConnection",
    "cosmos": "CosmosConnection",
    "storage": "EtlStorage",
    "storagequeue": "EtlStorage",
}


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
    """The ``key=value`` parts, keys lower-cased; the secret parts are registered for masking."""
    from common.logs import register_secret

    parts: dict[str, str] = {}
    for piece in value.split(";"):
        if "=" in piece:
            key, _, val = piece.partition("=")
            parts[key.strip().lower()] = val.strip()
    for name in _SECRET_PARTS:
        register_secret(parts.get(name))
    return parts


def read_service_bus_connection(read: SettingsReader, name: str) -> Connection:
    conn = read.raw(name)
    if conn is not None:
        if "endpoint" not in connection_string_parts(conn):
            raise ConfigurationError(
                name, "must be a Service Bus connection string ('Endpoint=sb://<namespace>/;SharedAccessKeyName=...;...')."
            )
        return Connection(name, "servicebus", connection_string=conn)
    setting = f"{name}__fullyQualifiedNamespace"
    namespace = read.raw(setting)
    if namespace is None:
        raise ConfigurationError(
            setting, f"is not set (nor is '{name}'); set it to a namespace such as 'my-ns.servicebus.windows.net'.")
    host = urlsplit(namespace).hostname if "://" in namespace else namespace.strip("/")
    if not host or not re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?", host):
        raise ConfigurationError(setting, "must be a host name such as 'my-ns.servicebus.windows.net'.")
    return Connection(name, "servicebus", endpoint=host)


def read_cosmos_connection(read: SettingsReader, name: str) -> Connection:
    conn = read.raw(name)
    if conn is not None:
        parts = connection_string_parts(conn)
        if "accountendpoint" not in parts or "accountkey" not in parts:
            raise ConfigurationError(
                name, "must be a Cosmos DB connection string ('AccountEndpoint=https://...;AccountKey=...;').")
        return Connection(name, "cosmos", connection_string=conn)
    setting = f"{name}__accountEndpoint"
    endpoint = read.raw(setting)
    example = "https://my-account.documents.azure.com:443/"
    if endpoint is None:
        raise ConfigurationError(setting, f"is not set (nor is '{name}'); set it to an endpoint such as '{example}'.")
    return Connection(name, "cosmos", endpoint=https_url(setting, endpoint, example))


def read_storage_connection(read: SettingsReader, name: str) -> Connection:
    """The Blob service of the storage connection ``name``."""
    return _read_storage_service(read, name, "storage", "blob")


def read_storage_queue_connection(read: SettingsReader, name: str) -> Connection:
    """The Queue service of the storage connection ``name`` (``<name>__queueServiceUri`` in the
    identity form, as the Functions queue extension reads it)."""
    return _read_storage_service(read, name, "storagequeue", "queue")


def _read_storage_service(read: SettingsReader, name: str, kind: ConnectionKind, service: str) -> Connection:
    conn = read.raw(name)
    if conn is not None:
        parts = connection_string_parts(conn)
        if not (parts.get("usedevelopmentstorage") == "true" or "accountname" in parts
                or f"{service}endpoint" in parts):
            raise ConfigurationError(
                name,
                "must be a storage connection string ('DefaultEndpointsProtocol=https;AccountName=...;...' "
                "or 'UseDevelopmentStorage=true').",
            )
        return Connection(name, kind, connection_string=conn)
    example = f"https://myaccount.{service}.core.windows.net"
    uri_setting = f"{name}__{service}ServiceUri"
    uri = read.url(uri_setting, example)
    if uri is not None:
        return Connection(name, kind, endpoint=uri)
    account = read.raw(f"{name}__accountName")
    if account is not None:
        if not re.fullmatch(r"[a-z0-9]{3,24}", account):
            raise ConfigurationError(f"{name}__accountName",
                                     "must be a storage account name (3-24 lowercase letters and digits).")
        return Connection(name, kind, endpoint=f"https://{account}.{service}.core.windows.net/")
    raise ConfigurationError(
        uri_setting,
        f"is not set (nor '{name}__accountName' or '{name}'); set it to a URI such as '{example}'.",
    )
