from __future__ import annotations

import json
import logging

import pytest

from common.logs import bind_invocation, describe_error, redact, register_secret
from tests.conftest import FakeContext


def test_records_are_json_with_the_invocation_identity(caplog: pytest.LogCaptureFixture) -> None:
    context = FakeContext(function_name="HttpGreeting", invocation_id="inv-1")
    log = bind_invocation(context, correlation_id="corr-9").bind(extra="x")
    with caplog.at_level(logging.INFO):
        log.info("thing.done", count=3, durationMs=1.5)
    record = caplog.records[-1]
    payload = json.loads(record.getMessage())
    assert payload == {
        "event": "thing.done", "function": "HttpGreeting", "invocationId": "inv-1",
        "correlationId": "corr-9", "extra": "x", "count": 3, "durationMs": 1.5,
    }
    assert record.structured == payload  # type: ignore[attr-defined]


def test_correlation_id_defaults_to_the_invocation_id() -> None:
    log = bind_invocation(FakeContext(invocation_id="inv-2"))
    assert log.fields["correlationId"] == "inv-2"


@pytest.mark.parametrize(
    "text",
    [
        "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey=abcDEF123+/=",
        "AccountEndpoint=https://a:8081/;AccountKey=C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==;",
        "https://acct.blob.core.windows.net/c/b?sv=2021&sig=abcdEFGH%2Bsecret&se=2030",
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ],
)
def test_redact_masks_credentials(text: str) -> None:
    masked = redact(text)
    for fragment in ("abcDEF123", "C2y6yDjf5", "abcdEFGH", "eyJzdWIi", "sflKxwRJ"):
        assert fragment not in masked
    assert "***" in masked


def test_registered_secrets_never_reach_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("hunter2-super-secret")
    log = bind_invocation(FakeContext())
    with caplog.at_level(logging.INFO):
        log.info("oops", detail="the key is hunter2-super-secret", nested={"k": ["hunter2-super-secret"]})
        log.exception("failed", ValueError("bad key hunter2-super-secret"))
    assert "hunter2-super-secret" not in caplog.text
    assert caplog.text.count("***") >= 3


def test_describe_error_is_bounded_and_masked() -> None:
    error = RuntimeError("AccountKey=abc123secret; " + "x" * 1000)
    text = describe_error(error, limit=120)
    assert text.startswith("RuntimeError: AccountKey=***")
    assert len(text) == 120


@pytest.mark.parametrize("text", [
    '{"AccountKey": "c2VjcmV0LWtleS12YWx1ZQ=="}',
    "AccountEndpoint%3Dhttps%3A%2F%2Fa%2F%3BAccountKey%3Dc2VjcmV0LWtleS12YWx1ZQ%3D%3D",
])
def test_redact_masks_quoted_and_url_encoded_keys(text: str) -> None:
    assert "c2VjcmV0LWtleS12YWx1ZQ" not in redact(text)


def test_connection_string_keys_are_registered_when_settings_read_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from common import settings
    from tests.conftest import set_env

    set_env(monkeypatch, CosmosConnection="AccountEndpoint=https://a:443/;AccountKey=zz-unique-key-value-77;")
    settings.cosmos_connection()
    assert "zz-unique-key-value-77" not in redact("oops: zz-unique-key-value-77 leaked in free text")


def test_a_connection_string_shows_neither_its_key_nor_the_key_name() -> None:
    from common.logs import redact

    text = redact("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
                  "SharedAccessKey=c2VjcmV0LWtleS12YWx1ZQ==")
    assert "RootManageSharedAccessKey" not in text and "c2VjcmV0" not in text
    assert text == "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=***;SharedAccessKey=***"


def test_the_sdks_http_chatter_is_off_in_the_worker() -> None:
    """The Cosmos SDK logs two records per request at INFO; host.json cannot filter the worker's logs."""
    import logging

    import common.logs  # noqa: F401 - importing it is what every function does

    for name in ("azure.cosmos._cosmos_http_logging_policy", "azure.core.pipeline.policies.http_logging_policy",
                 "aiohttp.access"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


def test_every_logger_of_the_app_is_one_azure_monitor_exports() -> None:
    """configure_azure_monitor(logger_name="app") exports the "app" loggers and their children
    only; in OpenTelemetry mode the host no longer sends function logs itself."""
    import logging
    import re

    from tests.conftest import APP_ROOT

    names = []
    app_folders = ("common", "HttpGreeting", "QueueProcessor", "BlobEtl", "CleanupTimer")
    for path in (path for folder in app_folders for path in (APP_ROOT / folder).glob("*.py")):
        names += re.findall(r'logging\.getLogger\(([^)]*)\)', path.read_text())
    assert names, "no logger found"
    for name in names:
        assert name.startswith(('"app.', 'f"app.')) or name == "name", name
    assert logging.getLogger("app.common.secrets").parent is not None
