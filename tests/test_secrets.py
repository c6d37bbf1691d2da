from __future__ import annotations

import asyncio

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

from common import logs
from common.secrets import SecretStore, SecretUnavailableError
from tests.conftest import set_env
from tests.fakes import FakeClock, FakeSecretClient


@pytest.fixture
def vault_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, KEY_VAULT_URL="https://unit-test.vault.azure.net/")


async def test_local_mode_reads_the_app_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, API_KEY="local-key-123")
    vault = FakeSecretClient({})
    store = SecretStore(vault.fetch)
    assert await store.get("greeting-api-key", local_setting="API_KEY") == "local-key-123"
    assert await store.get("greeting-api-key") is None
    assert vault.calls == 0


async def test_an_unresolved_key_vault_reference_is_refused_not_taken_as_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Key Vault reference the platform could not resolve stays as its literal text in the setting."""
    from common.settings import ConfigurationError

    set_env(monkeypatch, API_KEY="@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/greeting-api-key/)")
    with pytest.raises(ConfigurationError, match="API_KEY.*Key Vault reference"):
        await SecretStore(FakeSecretClient({}).fetch).get("greeting-api-key", local_setting="API_KEY")


async def test_an_unresolved_reference_makes_http_greeting_a_500_not_an_open_door(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import azure.functions as func

    import HttpGreeting
    from tests.conftest import FakeContext

    reference = "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/greeting-api-key/)"
    set_env(monkeypatch, API_KEY=reference)
    req = func.HttpRequest("GET", "http://x/api/HttpGreeting", headers={"x-api-key": reference}, params={"name": "A"},
                           body=b"")
    response = await HttpGreeting.main(req, FakeContext(function_name="HttpGreeting"))
    assert (response.status_code, json.loads(response.get_body())) == (500, {"error": "Internal server error"})


async def test_values_are_cached_for_the_ttl(vault_mode: None) -> None:
    clock = FakeClock(start=1000.0)
    vault = FakeSecretClient({"k": "v1"})
    store = SecretStore(vault.fetch, clock=clock)
    assert await store.get("k") == "v1"
    vault.secrets["k"] = "v2"
    clock.now += 299
    assert await store.get("k") == "v1"
    clock.now += 2
    assert await store.get("k") == "v2"
    assert vault.calls == 2


async def test_concurrent_readers_share_one_fetch(vault_mode: None) -> None:
    vault = FakeSecretClient({"k": "value"})
    vault.delay = 0.05
    store = SecretStore(vault.fetch)
    results = await asyncio.gather(*(store.get("k") for _ in range(50)))
    assert results == ["value"] * 50
    assert vault.calls == 1


async def test_unreachable_vault_raises_a_clear_error(vault_mode: None) -> None:
    vault = FakeSecretClient({})
    vault.error = ServiceRequestError("Cannot connect to host unit-test.vault.azure.net")
    store = SecretStore(vault.fetch)
    with pytest.raises(SecretUnavailableError, match="Key Vault secret 'k' is unavailable: ServiceRequestError"):
        await store.get("k")


async def test_denied_identity_is_unavailable_too(vault_mode: None) -> None:
    vault = FakeSecretClient({})
    vault.error = ClientAuthenticationError("no identity")
    with pytest.raises(SecretUnavailableError):
        await SecretStore(vault.fetch).get("k")


async def test_stale_value_is_served_while_the_vault_is_down(vault_mode: None) -> None:
    clock = FakeClock(start=1000.0)
    vault = FakeSecretClient({"k": "v1"})
    store = SecretStore(vault.fetch, clock=clock)
    await store.get("k")
    vault.error = ServiceRequestError("down")
    clock.now += 400
    assert await store.get("k") == "v1"
    clock.now += 3600
    with pytest.raises(SecretUnavailableError):
        await store.get("k")


async def test_missing_secret_is_none_and_remembered_briefly(vault_mode: None) -> None:
    clock = FakeClock(start=1000.0)
    vault = FakeSecretClient({})
    store = SecretStore(vault.fetch, clock=clock)
    assert await store.get("absent") is None
    assert await store.get("absent") is None
    assert vault.calls == 1
    clock.now += 31
    vault.secrets["absent"] = "now-here"
    assert await store.get("absent") == "now-here"


async def test_hanging_vault_times_out(vault_mode: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from common import secrets

    monkeypatch.setattr(secrets, "FETCH_TIMEOUT_SECONDS", 0.1)
    vault = FakeSecretClient({"k": "v"})
    vault.delay = 30
    with pytest.raises(SecretUnavailableError, match="TimeoutError"):
        await SecretStore(vault.fetch).get("k")


async def test_fetched_values_are_registered_for_redaction(vault_mode: None) -> None:
    vault = FakeSecretClient({"k": "very-secret-value-42"})
    await SecretStore(vault.fetch).get("k")
    assert "very-secret-value-42" not in logs.redact("leaked very-secret-value-42")


async def test_while_the_vault_is_down_the_stale_value_is_served_without_waiting(vault_mode: None) -> None:
    clock = FakeClock(start=1000.0)
    vault = FakeSecretClient({"k": "v1"})
    store = SecretStore(vault.fetch, clock=clock)
    await store.get("k")
    vault.error = ServiceRequestError("down")
    clock.now += 400
    assert await store.get("k") == "v1"  # this call tried the vault once
    calls = vault.calls
    for _ in range(5):
        clock.now += 1
        assert await store.get("k") == "v1"
    assert vault.calls == calls  # the next callers did not wait on the vault again
    clock.now += 31
    assert await store.get("k") == "v1"
    assert vault.calls == calls + 1  # retried after the back-off
