from __future__ import annotations

import asyncio

import pytest

from common import clients, credential, loop_cache
from common.settings import ConfigurationError
from tests.conftest import set_env

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)
COSMOS_LOCAL = "AccountEndpoint=https://127.0.0.1:8081/;AccountKey=C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==;"
SERVICE_BUS = "Endpoint=sb://unit.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=c2VjcmV0;"


async def test_clients_are_built_once_and_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, EtlStorage=AZURITE, CosmosConnection=COSMOS_LOCAL, ServiceBusConnection=SERVICE_BUS,
            COSMOS_DATABASE="db", COSMOS_CONTAINER="items")
    try:
        assert clients.blob_service_client() is clients.blob_service_client()
        assert clients.cosmos_container() is clients.cosmos_container()
        assert clients.queue_sender("q1") is clients.queue_sender("q1")
        assert clients.queue_sender("q1") is not clients.queue_sender("q2")
        assert clients.blob_service_client().account_name == "devstoreaccount1"
        assert clients.cosmos_container().id == "items"
    finally:
        await clients.close_all()


async def test_identity_connections_use_the_shared_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, EtlStorage__accountName="prodstorage",
            CosmosConnection__accountEndpoint="https://acct.documents.azure.com:443/",
            ServiceBusConnection__fullyQualifiedNamespace="prod.servicebus.windows.net",
            KEY_VAULT_URL="https://prod.vault.azure.net/")
    try:
        blob = clients.blob_service_client()
        assert blob.url.startswith("https://prodstorage.blob.core.windows.net")
        cred = credential.get_credential()
        assert blob.credential is cred
        assert clients.secret_client().vault_url == "https://prod.vault.azure.net"
        assert clients.service_bus_client().fully_qualified_namespace == "prod.servicebus.windows.net"
        assert type(cred).__name__ == "DefaultAzureCredential"
    finally:
        await clients.close_all()


async def test_in_azure_the_managed_identity_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, IDENTITY_ENDPOINT="http://localhost:42356/msi/token", IDENTITY_HEADER="x",
            AZURE_CLIENT_ID="00000000-0000-0000-0000-000000000001")
    try:
        cred = credential.get_credential()
        assert type(cred).__name__ == "ManagedIdentityCredential"
        assert credential.get_credential() is cred
    finally:
        await clients.close_all()


async def test_tls_verification_is_relaxed_only_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, CosmosConnection=COSMOS_LOCAL, COSMOS_DATABASE="db", COSMOS_CONTAINER="c")
    try:
        local = clients.cosmos_client()
        assert local.client_connection.connection_policy.DisableSSLVerification is True
    finally:
        await clients.close_all()
    set_env(monkeypatch, CosmosConnection="AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey=c2VjcmV0;")
    try:
        remote = clients.cosmos_client()
        assert not remote.client_connection.connection_policy.DisableSSLVerification
    finally:
        await clients.close_all()


async def test_missing_key_vault_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="KEY_VAULT_URL"):
        clients.secret_client()


def test_a_new_event_loop_gets_a_new_client(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, EtlStorage=AZURITE)

    async def build() -> object:
        return clients.blob_service_client()

    first = asyncio.run(build())
    second = asyncio.run(build())
    assert first is not second
    loop_cache.reset()


async def test_close_all_closes_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []

    class Closable:
        def __init__(self, name: str) -> None:
            self.name = name

        async def close(self) -> None:
            closed.append(self.name)

    loop_cache.get_or_build("a", lambda: Closable("credential"))
    loop_cache.get_or_build("b", lambda: Closable("client"))
    await clients.close_all()
    assert closed == ["client", "credential"]
    assert loop_cache.get_or_build("a", lambda: Closable("fresh")).name == "fresh"


def _transport_of(client: object) -> object:
    """The innermost transport of an azure-core based client's pipeline."""
    from azure.core.pipeline.transport import AioHttpTransport

    seen, stack = set(), [client]
    while stack:
        node = stack.pop()
        if isinstance(node, AioHttpTransport):
            return node
        if id(node) in seen or node is None or isinstance(node, (str, bytes, int, float)):
            continue
        seen.add(id(node))
        for name in ("_client", "client_connection", "pipeline_client", "_pipeline", "_transport", "_policies"):
            value = getattr(node, name, None)
            stack.extend(value if isinstance(value, list) else [value])
    raise AssertionError(f"no aiohttp transport in {type(client).__name__}")


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("false", False), ("true", True)])
async def test_http_clients_look_up_proxies_only_when_told_to(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                                              expected: bool) -> None:
    """aiohttp's per-request proxy and .netrc lookups (trust_env) double the client CPU of a Cosmos DB
    call; HTTP_PROXY_FROM_ENVIRONMENT=true brings them back for users behind a proxy."""
    set_env(monkeypatch, EtlStorage=AZURITE, CosmosConnection=COSMOS_LOCAL, COSMOS_DATABASE="db",
            COSMOS_CONTAINER="items", KEY_VAULT_URL="https://127.0.0.1:8443/")
    if value is not None:
        set_env(monkeypatch, HTTP_PROXY_FROM_ENVIRONMENT=value)
    try:
        for client in (clients.cosmos_client(), clients.blob_service_client(), clients.secret_client()):
            assert _transport_of(client)._use_env_settings is expected, type(client).__name__  # type: ignore[attr-defined]
    finally:
        await clients.close_all()
