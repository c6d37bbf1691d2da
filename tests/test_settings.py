from __future__ import annotations

from pathlib import Path

import pytest

from common import settings
from common.settings import ConfigurationError
from tests.conftest import set_env


def test_defaults_apply_when_settings_are_absent() -> None:
    cleanup = settings.cleanup_settings()
    assert cleanup.retention_days == 30
    assert cleanup.max_deletes is None
    assert cleanup.dry_run is False
    etl = settings.etl_settings()
    assert (etl.input_container, etl.summary_container, etl.write_concurrency) == ("incoming", "summaries", 32)
    assert settings.api_key_settings().api_key_secret_name == "greeting-api-key"
    assert settings.secret_settings().key_vault_url is None
    assert settings.secret_settings().cache_ttl_seconds == 300


@pytest.mark.parametrize("value", ["abc", "1.5", "-3", "", "  "])
def test_malformed_retention_days_names_the_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    set_env(monkeypatch, RETENTION_DAYS=value)
    if not value.strip():
        assert settings.cleanup_settings().retention_days == 30  # blank means "use the default"
        return
    with pytest.raises(ConfigurationError) as info:
        settings.cleanup_settings()
    assert info.value.setting == "RETENTION_DAYS"
    assert "RETENTION_DAYS" in str(info.value)
    assert "integer >= 0" in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("Yes", True), ("false", False), ("0", False)])
def test_booleans_accept_common_spellings(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    set_env(monkeypatch, CLEANUP_DRY_RUN=value)
    assert settings.cleanup_settings().dry_run is expected


def test_malformed_boolean_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, CLEANUP_DRY_RUN="maybe")
    with pytest.raises(ConfigurationError, match="CLEANUP_DRY_RUN' must be true or false"):
        settings.cleanup_settings()


def test_missing_required_queue_name_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.queue_settings()
    assert info.value.setting == "INPUT_QUEUE_NAME"
    assert "is not set" in str(info.value)


def test_key_vault_url_must_be_https(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, KEY_VAULT_URL="http://my-vault.vault.azure.net")
    with pytest.raises(ConfigurationError, match="KEY_VAULT_URL' must use https"):
        settings.secret_settings()
    set_env(monkeypatch, KEY_VAULT_URL="https://my-vault.vault.azure.net")
    assert settings.secret_settings().key_vault_url == "https://my-vault.vault.azure.net/"


def test_connection_string_form_wins_and_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=x;SharedAccessKey=TOPSECRETVALUE="
    set_env(monkeypatch, ServiceBusConnection=secret)
    conn = settings.service_bus_connection()
    assert conn.connection_string == secret and conn.endpoint is None
    assert "TOPSECRET" not in repr(conn) and "TOPSECRET" not in str(conn)


def test_identity_based_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        ServiceBusConnection__fullyQualifiedNamespace="my-ns.servicebus.windows.net",
        CosmosConnection__accountEndpoint="https://acct.documents.azure.com:443/",
        EtlStorage__accountName="mystorage",
    )
    assert settings.service_bus_connection().endpoint == "my-ns.servicebus.windows.net"
    assert settings.cosmos_connection().endpoint == "https://acct.documents.azure.com:443/"
    assert settings.storage_connection().endpoint == "https://mystorage.blob.core.windows.net/"
    set_env(monkeypatch, EtlStorage__blobServiceUri="https://other.blob.core.windows.net")
    assert settings.storage_connection().endpoint == "https://other.blob.core.windows.net/"


def test_the_queue_service_of_a_storage_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, EtlStorage__accountName="mystorage")
    assert settings.storage_queue_connection().endpoint == "https://mystorage.queue.core.windows.net/"
    set_env(monkeypatch, EtlStorage__queueServiceUri="https://other.queue.core.windows.net")
    assert settings.storage_queue_connection().endpoint == "https://other.queue.core.windows.net/"
    monkeypatch.delenv("EtlStorage__accountName")
    monkeypatch.delenv("EtlStorage__queueServiceUri")
    set_env(monkeypatch, EtlStorage__blobServiceUri="https://other.blob.core.windows.net")
    with pytest.raises(ConfigurationError, match="'EtlStorage__queueServiceUri' is not set"):
        settings.storage_queue_connection()


@pytest.mark.parametrize(("value", "ok"), [("etl-work", True), ("a1b", True), ("ab", False), ("Etl-work", False),
                                           ("etl--work", False), ("-etl", False), ("etl-", False), ("e" * 56, True),
                                           ("e" * 57, False), ("etl_work", False)])
def test_the_work_queue_name_follows_storage_rules_with_room_for_poison(value: str, ok: bool) -> None:
    if ok:
        assert settings.etl_settings({"ETL_WORK_QUEUE": value}).work_queue == value
    else:
        with pytest.raises(ConfigurationError, match="ETL_WORK_QUEUE.*-poison"):
            settings.etl_settings({"ETL_WORK_QUEUE": value})


def test_fan_out_bounds_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = settings.etl_settings({})
    assert (cfg.inline_max_bytes, cfg.segment_records, cfg.segment_bytes) == (1024 * 1024, 5000, 4 * 1024 * 1024)
    with pytest.raises(ConfigurationError, match="ETL_SEGMENT_BYTES"):
        settings.etl_settings({"ETL_SEGMENT_BYTES": str(65 * 1024 * 1024)})
    with pytest.raises(ConfigurationError, match="ETL_SEGMENT_RECORDS"):
        settings.etl_settings({"ETL_SEGMENT_RECORDS": "0"})


def test_max_dequeue_count_is_read_from_host_json(tmp_path: Path) -> None:
    from common.host_config import queue_max_dequeue_count, read_queue_max_dequeue_count

    host = tmp_path / "host.json"
    host.write_text('{"version": "2.0"}')
    assert read_queue_max_dequeue_count(host) == 5
    host.write_text('{"version": "2.0", "extensions": {"queues": {"maxDequeueCount": 3}}}')
    assert read_queue_max_dequeue_count(host) == 3
    host.write_text('{"version": "2.0", "extensions": {"queues": {"maxDequeueCount": "3"}}}')
    with pytest.raises(ConfigurationError, match="maxDequeueCount"):
        read_queue_max_dequeue_count(host)
    assert queue_max_dequeue_count() == 5  # the app's own host.json


def test_the_app_setting_overrides_host_jsons_max_dequeue_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from common.host_config import MAX_DEQUEUE_OVERRIDE, queue_max_dequeue_count

    set_env(monkeypatch, **{MAX_DEQUEUE_OVERRIDE: "8"})
    assert queue_max_dequeue_count() == 8
    set_env(monkeypatch, **{MAX_DEQUEUE_OVERRIDE: "eight"})
    with pytest.raises(ConfigurationError, match=MAX_DEQUEUE_OVERRIDE):
        queue_max_dequeue_count()
    monkeypatch.delenv(MAX_DEQUEUE_OVERRIDE)
    settings.reset_cache()


def test_missing_connection_names_both_forms() -> None:
    with pytest.raises(ConfigurationError) as info:
        settings.cosmos_connection()
    assert "CosmosConnection__accountEndpoint" in str(info.value)
    assert "'CosmosConnection'" in str(info.value)


def test_malformed_connection_string_is_rejected_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, CosmosConnection="AccountKey=SUPERSECRETKEY")
    with pytest.raises(ConfigurationError) as info:
        settings.cosmos_connection()
    assert "CosmosConnection" in str(info.value)
    assert "SUPERSECRETKEY" not in str(info.value)


def test_function_timeout_is_read_from_host_json(tmp_path: Path) -> None:
    host = tmp_path / "host.json"
    host.write_text('{"version": "2.0", "functionTimeout": "00:10:00"}')
    assert settings.read_function_timeout(host) == 600
    host.write_text('{"version": "2.0", "functionTimeout": "1.02:00:30"}')
    assert settings.read_function_timeout(host) == 26 * 3600 + 30
    host.write_text('{"version": "2.0", "functionTimeout": "-1"}')
    assert settings.read_function_timeout(host) is None
    host.write_text('{"version": "2.0", "functionTimeout": "ten minutes"}')
    with pytest.raises(ConfigurationError, match="host.json setting .functionTimeout. must look like"):
        settings.read_function_timeout(host)


def test_cleanup_budget_is_derived_from_the_app_function_timeout() -> None:
    from retention.cleanup import time_budget

    timeout = settings.function_timeout_seconds()
    assert timeout == 600  # the repository's host.json
    assert settings.cleanup_settings().time_budget_seconds is None  # unset: the cleanup derives it
    assert time_budget(settings.cleanup_settings().time_budget_seconds, timeout) == pytest.approx(timeout * 0.8 - 30)
    assert time_budget(45.0, timeout) == 45.0 and time_budget(None, None) == 600.0


def test_cleanup_budget_beyond_timeout_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, CLEANUP_TIME_BUDGET_SECONDS="900")
    with pytest.raises(ConfigurationError, match="CLEANUP_TIME_BUDGET_SECONDS"):
        settings.cleanup_settings()


def test_every_setting_read_is_in_the_example_and_the_settings_page() -> None:
    import json

    root = Path(settings.__file__).resolve().parent.parent
    # docs/settings.md lists every setting the app reads. Settings only the platform sets,
    # identity-based connection forms (the connection strings stand for them locally), and
    # settings with a derived default stay out of the example.
    documented = {n for n in settings.setting_names() if "__" not in n} | {"CLEANUP_SCHEDULE"}
    names = documented - {*settings.PLATFORM_SETTINGS, "CLEANUP_TIME_BUDGET_SECONDS", "AZURE_CLIENT_ID",
                          "OTEL_SERVICE_NAME"}
    example = json.loads((root / "local.settings.example.json").read_text())["Values"]
    page = (root / "docs" / "settings.md").read_text()
    assert sorted(names - set(example)) == []
    assert sorted(n for n in documented if f"`{n}`" not in page) == []


def test_every_setting_a_group_reads_is_declared_and_listed() -> None:
    """A group cannot read a name it does not declare, so setting_names() cannot drift from the code."""
    from common.setting_parsers import SettingsReader

    reader = SettingsReader({"RETENTION_DAYS": "7"}).restricted(("RETENTION_DAYS",), "test_group")
    assert reader.integer("RETENTION_DAYS", 30) == 7
    with pytest.raises(LookupError, match="test_group reads app setting 'CLEANUP_DRY_RUN' but does not declare it"):
        reader.boolean("CLEANUP_DRY_RUN", False)
    # Every group and connection reads without tripping that check, from a full environment.
    values = {name: "" for name in settings.setting_names()}
    values.update(INPUT_QUEUE_NAME="in", OUTPUT_QUEUE_NAME="out", INVALID_QUEUE_NAME="bad", COSMOS_DATABASE="db",
                  COSMOS_CONTAINER="c", ServiceBusConnection__fullyQualifiedNamespace="ns.servicebus.windows.net",
                  CosmosConnection__accountEndpoint="https://a.documents.azure.com:443/", EtlStorage__accountName="acct")
    for group in (settings.identity_settings, settings.secret_settings, settings.api_key_settings,
                  settings.queue_settings, settings.cosmos_target, settings.etl_settings, settings.cleanup_settings,
                  settings.telemetry_settings, settings.network_settings, settings.service_bus_connection, settings.cosmos_connection,
                  settings.storage_connection):
        assert group(values=values) is not None
    assert {"OTEL_SERVICE_NAME", "API_KEY", "EtlStorage__blobServiceUri"} <= settings.setting_names()


def test_a_group_reads_from_a_mapping_without_touching_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, RETENTION_DAYS="9")
    assert settings.cleanup_settings({"RETENTION_DAYS": "3"}).retention_days == 3
    assert settings.cleanup_settings().retention_days == 9
    with pytest.raises(ConfigurationError, match="RETENTION_DAYS"):
        settings.cleanup_settings({"RETENTION_DAYS": "9" * 5000})
