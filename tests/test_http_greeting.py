from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ServiceRequestError

import HttpGreeting
from tests.conftest import FakeContext, set_env, use_fake_clients
from tests.fakes import FakeSecretClient

API_KEY = "test-api-key-0123456789"


def request(
    method: str = "GET",
    *,
    params: dict[str, str] | None = None,
    body: bytes | str | dict[str, Any] | None = None,
    key: str | None = API_KEY,
    headers: dict[str, str] | None = None,
) -> func.HttpRequest:
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["x-api-key"] = key
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    return func.HttpRequest(method, "http://localhost:7071/api/HttpGreeting", headers=all_headers,
                            params=params or {}, body=body or b"")


async def call(req: func.HttpRequest, context: FakeContext | None = None) -> tuple[int, dict[str, Any], func.HttpResponse]:
    response = await HttpGreeting.main(req, context or FakeContext(function_name="HttpGreeting"))
    return response.status_code, json.loads(response.get_body()), response


@pytest.fixture
def local_key(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, API_KEY=API_KEY)


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> FakeSecretClient:
    set_env(monkeypatch, KEY_VAULT_URL="https://unit-test.vault.azure.net/")
    fake = FakeSecretClient({"greeting-api-key": API_KEY})
    use_fake_clients(monkeypatch, vault=fake)
    return fake


async def test_get_with_query_name_greets(local_key: None) -> None:
    status, body, response = await call(request(params={"name": "Ada"}))
    assert status == 200
    assert body == {"message": "Hello, Ada"}
    assert response.mimetype == "application/json"
    assert response.headers["Content-Type"].startswith("application/json")


async def test_post_with_json_body_greets(local_key: None) -> None:
    status, body, _ = await call(request("POST", body={"name": "Grace Hopper"}))
    assert (status, body) == (200, {"message": "Hello, Grace Hopper"})


async def test_query_wins_over_body(local_key: None) -> None:
    _, body, _ = await call(request("POST", params={"name": "Query"}, body={"name": "Body"}))
    assert body == {"message": "Hello, Query"}


async def test_unicode_names_round_trip(local_key: None) -> None:
    _, body, response = await call(request("POST", body={"name": "Zoë 李"}))
    assert body == {"message": "Hello, Zoë 李"}


@pytest.mark.parametrize(
    ("req_kwargs", "fragment"),
    [
        ({}, "Missing 'name'"),
        ({"method": "POST", "body": "{\"nome\": 1}"}, "Missing 'name'"),
        ({"method": "POST", "body": "{not json"}, "not valid JSON"),
        ({"method": "POST", "body": b"\xff\xfe\x00"}, "not valid UTF-8"),
        ({"method": "POST", "body": "[\"Ada\"]"}, "must be a JSON object"),
        ({"method": "POST", "body": {"name": 42}}, "must be a string"),
        ({"method": "POST", "body": {"name": None}}, "must be a string"),
        ({"method": "POST", "body": {"name": "   "}}, "must not be empty"),
        ({"params": {"name": ""}}, "must not be empty"),
        ({"params": {"name": "x" * 101}}, "at most 100 characters"),
        ({"params": {"name": "Ada\nLovelace"}}, "control characters"),
        ({"method": "POST", "body": {"name": "Ada\u0000"}}, "control characters"),
    ],
)
async def test_bad_input_gets_a_specific_400(local_key: None, req_kwargs: dict[str, Any], fragment: str) -> None:
    method = req_kwargs.pop("method", "GET")
    status, body, _ = await call(request(method, **req_kwargs))
    assert status == 400
    assert fragment in body["error"]


async def test_a_body_over_64_kib_is_a_413_as_publish_event_answers(local_key: None) -> None:
    """Issue 27: HttpGreeting answered 400 where PublishEvent answers 413 for an oversized body."""
    status, body, _ = await call(request("POST", body=b"{\"name\": \"" + b"a" * 70000 + b"\"}"))
    assert status == 413 and "at most 65536 bytes" in body["error"]


async def test_name_of_exactly_100_characters_is_accepted(local_key: None) -> None:
    status, body, _ = await call(request(params={"name": "n" * 100}))
    assert status == 200 and body["message"] == "Hello, " + "n" * 100


@pytest.mark.parametrize("key", [None, "", "wrong-key", API_KEY + "x", API_KEY[:-1]])
async def test_missing_or_wrong_key_gets_401_without_echo(local_key: None, key: str | None,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        status, body, response = await call(request(params={"name": "Ada"}, key=key))
    assert status == 401
    assert "x-api-key" in body["error"]
    raw = response.get_body().decode()
    if key:
        assert key not in raw and key not in caplog.text
    assert API_KEY not in raw and API_KEY not in caplog.text


async def test_unauthorized_request_learns_nothing_about_validation(local_key: None) -> None:
    status, _, _ = await call(request("POST", body="{broken", key="nope"))
    assert status == 401


async def test_no_key_configured_refuses_everything_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        status, body, _ = await call(request(params={"name": "Ada"}, key="anything"))
    assert status == 401
    assert "key_not_configured" in caplog.text
    assert "greeting-api-key" in caplog.text and "API_KEY" in caplog.text


async def test_key_is_read_from_the_vault_and_cached(vault: FakeSecretClient) -> None:
    for _ in range(5):
        status, _, _ = await call(request(params={"name": "Ada"}))
        assert status == 200
    assert vault.calls == 1


async def test_custom_secret_name(vault: FakeSecretClient, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.secrets["other-key"] = "other-value-123"
    set_env(monkeypatch, API_KEY_SECRET_NAME="other-key")
    assert (await call(request(params={"name": "A"}, key="other-value-123")))[0] == 200
    assert (await call(request(params={"name": "A"})))[0] == 401


async def test_secret_missing_from_the_vault_fails_closed(vault: FakeSecretClient) -> None:
    vault.secrets.clear()
    assert (await call(request(params={"name": "Ada"})))[0] == 401


async def test_unreachable_vault_gets_503_with_retry_after(vault: FakeSecretClient,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    vault.error = ServiceRequestError("Cannot connect to host unit-test.vault.azure.net:443")
    with caplog.at_level(logging.ERROR):
        status, body, response = await call(request(params={"name": "Ada"}))
    assert status == 503
    assert response.headers["Retry-After"] == "30"
    assert "temporarily unavailable" in body["error"]
    assert "key_unavailable" in caplog.text


async def test_unexpected_error_is_a_generic_500(local_key: None, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from HttpGreeting import greeting

    def boom(params: Any, body: bytes) -> str:
        raise RuntimeError("internal detail AccountKey=zzzsecret")

    monkeypatch.setattr(greeting, "extract_name", boom)
    with caplog.at_level(logging.ERROR):
        status, body, response = await call(request(params={"name": "Ada"}))
    assert (status, body) == (500, {"error": "Internal server error"})
    assert "internal detail" not in response.get_body().decode()
    assert "internal detail" in caplog.text and "zzzsecret" not in caplog.text


async def test_misconfigured_vault_url_is_a_500_naming_the_setting(monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    set_env(monkeypatch, KEY_VAULT_URL="not a url")
    with caplog.at_level(logging.ERROR):
        status, _, _ = await call(request(params={"name": "Ada"}))
    assert status == 500
    assert "KEY_VAULT_URL" in caplog.text


@pytest.mark.parametrize(
    ("sent", "expected"),
    [("abc-123", "abc-123"), ("trace:1.2_3", "trace:1.2_3"), ("bad value with spaces", None),
     ("x" * 200, None), ("<script>", None), (None, None)],
)
async def test_correlation_id_header(local_key: None, sent: str | None, expected: str | None) -> None:
    context = FakeContext(function_name="HttpGreeting", invocation_id="inv-42")
    headers = {"x-correlation-id": sent} if sent is not None else {}
    _, _, response = await call(request(params={"name": "Ada"}, headers=headers), context)
    assert response.headers["x-correlation-id"] == (expected or "inv-42")


async def test_every_error_response_carries_the_correlation_id(local_key: None) -> None:
    _, _, response = await call(request(key="wrong"), FakeContext(invocation_id="inv-7"))
    assert response.headers["x-correlation-id"] == "inv-7"


async def test_log_line_per_request_has_outcome_and_duration(local_key: None,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        await call(request(params={"name": "Ada"}), FakeContext(function_name="HttpGreeting", invocation_id="i-1"))
    payload = json.loads(caplog.records[-1].getMessage())
    assert payload["event"] == "greeting.completed"
    assert payload["status"] == 200 and payload["outcome"] == "greeted"
    assert payload["function"] == "HttpGreeting" and payload["invocationId"] == "i-1"
    assert payload["durationMs"] >= 0
    assert "Ada" not in caplog.text  # the caller's name is personal data: not logged


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"name": "Ada", "n": ' + b"1" * 5000 + b"}", "a number is too long"),
    (b"[" * 60000, "nests JSON too deeply"),
    (b'{"name": "A\\ud800"}', "unpaired UTF-16 surrogates"),
])
async def test_pathological_json_gets_a_400_not_a_500(local_key: None, body: bytes, fragment: str) -> None:
    status, payload, _ = await call(request("POST", body=body))
    assert status == 400 and fragment in payload["error"]
