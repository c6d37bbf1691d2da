"""Identity: bearer tokens validated against a loopback issuer's JWKS, per-route roles, Easy Auth, and
every bad input the issue names. Requests go through each function's ``main``; the keys are fetched
over HTTP from devhost.issuer, as they are from Entra ID in Azure."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import azure.functions as func
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import HttpGreeting
import PublishEvent
from common import loop_cache, settings
from devhost.issuer import DEFAULT_AUDIENCE, LocalIssuer, serve
from identity import SigningKeys, SigningKeysUnavailable, Unauthenticated
from identity.jwks import parse_jwks
from tests.conftest import FakeContext, set_env, use_fake_clients
from tests.fakes import FakeEventGridPublisher

API_KEY = "identity-api-key-0123456789"
TOPIC = "https://unit-topic.westeurope-1.eventgrid.azure.net/api/events"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from devhost.issuer import load_or_create_key

    return load_or_create_key(tmp_path_factory.mktemp("issuer") / "key.pem")


@pytest.fixture
async def issuer(signing_key: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LocalIssuer]:
    port = free_port()
    local = LocalIssuer(signing_key, f"http://127.0.0.1:{port}")
    runner = await serve(local, port)
    set_env(monkeypatch, AUTH_MODE="entra", AUTH_TENANT_ID=local.tenant, AUTH_AUDIENCE=f"{DEFAULT_AUDIENCE},client-guid",
            AUTH_ISSUER=local.issuer, AUTH_JWKS_URL=local.jwks_url, API_KEY=API_KEY,
            EVENT_GRID_TOPIC_ENDPOINT=TOPIC, EVENT_PUBLISH_BUDGET_SECONDS="2")
    yield local
    await loop_cache.aclose_all()  # the keys' HTTP session, opened on this test's loop
    await runner.cleanup()


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> FakeEventGridPublisher:
    fake = FakeEventGridPublisher()
    use_fake_clients(monkeypatch, event_grid=fake)
    return fake


def events_request(headers: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest("POST", "http://localhost:7071/api/events", params={},
                            headers={"content-type": "application/json", **headers}, body=b'{"orderId": 7}')


async def publish(headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = await PublishEvent.main(events_request(headers), FakeContext(function_name="PublishEvent"))
    return response.status_code, json.loads(response.get_body()), dict(response.headers)


async def greet(headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
    req = func.HttpRequest("GET", "http://localhost:7071/api/HttpGreeting", headers=headers, params={"name": "Ada"},
                           body=b"")
    response = await HttpGreeting.main(req, FakeContext(function_name="HttpGreeting"))
    return response.status_code, json.loads(response.get_body()), dict(response.headers)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


INVALID_TOKEN = 'Bearer realm="serverless-patterns", error="invalid_token"'


# -------------------------------------------------------------------------------- accepted

async def test_a_token_with_the_route_role_publishes_and_the_log_names_ids_not_the_token(
        issuer: LocalIssuer, topic: FakeEventGridPublisher, caplog: pytest.LogCaptureFixture) -> None:
    token = issuer.mint(roles=["Events.Publish"])
    with caplog.at_level(logging.INFO):
        status, body, _ = await publish(bearer(token))
    assert status == 202 and len(topic.published) == 1
    completed = [json.loads(r.getMessage()) for r in caplog.records if '"event.completed"' in r.getMessage()]
    assert completed[-1]["callerOid"] and completed[-1]["authMethod"] == "entra"
    assert token not in caplog.text and token.split(".")[1] not in caplog.text


async def test_a_user_token_with_the_delegated_scope_publishes(issuer: LocalIssuer, topic: FakeEventGridPublisher) -> None:
    assert (await publish(bearer(issuer.mint(scopes=["Events.Publish", "User.Read"]))))[0] == 202


async def test_a_v1_token_with_the_app_id_uri_and_appid_is_accepted(issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch,
                                                                  topic: FakeEventGridPublisher) -> None:
    v1_issuer = f"https://sts.windows.net/{issuer.tenant}/"
    set_env(monkeypatch, AUTH_ISSUER=f"{issuer.issuer},{v1_issuer}")
    claims = issuer.claims(roles=["Events.Publish"])
    claims.update(iss=v1_issuer, ver="1.0", appid=claims.pop("azp"))
    assert (await publish(bearer(issuer.sign(claims))))[0] == 202


async def test_http_greeting_takes_a_bearer_token_or_the_api_key(issuer: LocalIssuer) -> None:
    assert (await greet(bearer(issuer.mint())))[:2] == (200, {"message": "Hello, Ada"})
    assert (await greet({"x-api-key": API_KEY}))[:2] == (200, {"message": "Hello, Ada"})


async def test_no_credentials_on_http_greeting_is_the_key_401_with_a_bearer_challenge(issuer: LocalIssuer) -> None:
    status, body, headers = await greet({})
    assert (status, body) == (401, {"error": "Missing or invalid API key (header 'x-api-key')."})
    assert headers["WWW-Authenticate"] == 'Bearer realm="serverless-patterns"'


# --------------------------------------------------------------------------------- refused

async def test_no_header_or_bearer_without_a_token_is_a_401_bare_challenge(issuer: LocalIssuer,
                                                                         topic: FakeEventGridPublisher) -> None:
    for headers in ({}, {"authorization": "Bearer"}, {"authorization": "Bearer   "}):
        status, body, reply_headers = await publish(headers)
        assert status == 401 and reply_headers["WWW-Authenticate"] == 'Bearer realm="serverless-patterns"', headers
        assert "bearer token" in body["error"]
    assert topic.published == []


def hs256_with_the_public_key(issuer: LocalIssuer) -> str:
    """The classic confusion attack: the RSA public key's PEM used as an HMAC secret."""
    import hashlib
    import hmac

    pem = issuer.key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.kid}
    segments = [base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
                for part in (header, issuer.claims(roles=["Events.Publish"]))]
    signing_input = b".".join(segments)
    signature = base64.urlsafe_b64encode(hmac.new(pem, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


def unsigned(issuer: LocalIssuer) -> str:
    return jwt.encode(issuer.claims(roles=["Events.Publish"]), None, algorithm="none", headers={"kid": issuer.kid})


def signed_by_another_key(issuer: LocalIssuer) -> str:
    other = LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), issuer.base_url)
    return jwt.encode(issuer.claims(roles=["Events.Publish"]), other.key, algorithm="RS256",
                      headers={"kid": issuer.kid})


BAD_TOKENS = {
    "alg none": (unsigned, "RS256"),
    "HS256 with the public key": (hs256_with_the_public_key, "RS256"),
    "another tenant": (lambda i: i.mint(roles=["Events.Publish"], tenant=OTHER_TENANT), "another issuer"),
    "another audience": (lambda i: i.mint(roles=["Events.Publish"], audience="api://someone-else"), "another audience"),
    "expired": (lambda i: i.mint(roles=["Events.Publish"], now=time.time() - 7200, lifetime=3600), "expired"),
    "not yet valid": (lambda i: i.sign({**i.claims(roles=["Events.Publish"]), "nbf": int(time.time()) + 3600}),
                      "not valid yet"),
    "issued in the future": (lambda i: i.sign({**i.claims(roles=["Events.Publish"]), "iat": int(time.time()) + 86400}),
                             "not valid yet|future"),
    "no exp": (lambda i: i.sign({k: v for k, v in i.claims(roles=["Events.Publish"]).items() if k != "exp"}), "'exp'"),
    "exp not a number": (lambda i: i.sign({**i.claims(roles=["Events.Publish"]), "exp": "tomorrow"}), "not a number"),
    "exp infinite": (lambda i: i.sign({**i.claims(roles=["Events.Publish"]), "exp": 10**400}), "not a number"),
    "no kid": (lambda i: jwt.encode(i.claims(roles=["Events.Publish"]), i.key, algorithm="RS256"), "kid"),
    "unknown kid": (lambda i: i.sign(i.claims(roles=["Events.Publish"]), headers={"kid": "forged-kid"}),
                    "does not publish"),
    "wrong signature": (signed_by_another_key, "signature"),
    "not a JWT": (lambda i: "not-a-jwt", "not a JSON Web Token"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_every_bad_token_is_a_401_invalid_token_and_reaches_no_logic(
        case: str, issuer: LocalIssuer, topic: FakeEventGridPublisher) -> None:
    import re

    make, says = BAD_TOKENS[case]
    started = time.perf_counter()
    status, body, headers = await publish(bearer(make(issuer)))
    assert (status, headers["WWW-Authenticate"]) == (401, INVALID_TOKEN), body
    assert re.search(says, body["error"]), body
    assert topic.published == []
    assert time.perf_counter() - started < 1.0 or case == "unknown kid"  # keys cached after the first fetch


async def test_a_valid_token_without_the_route_role_is_a_403_naming_it(issuer: LocalIssuer,
                                                                      topic: FakeEventGridPublisher) -> None:
    status, body, headers = await publish(bearer(issuer.mint(roles=["Orders.Read"])))
    assert status == 403
    assert headers["WWW-Authenticate"] == ('Bearer realm="serverless-patterns", error="insufficient_scope", '
                                           'scope="Events.Publish"')
    assert "Events.Publish" in body["error"] and topic.published == []


async def test_an_oversized_or_repeated_authorization_header_is_a_400_invalid_request(
        issuer: LocalIssuer, topic: FakeEventGridPublisher) -> None:
    token = issuer.mint(roles=["Events.Publish"], oid="x" * 17000)  # validly signed, but over 16 KB
    for value in (f"Bearer {token}", f"Bearer {issuer.mint(roles=['Events.Publish'])}, Bearer other"):
        status, _, headers = await publish({"authorization": value})
        assert status == 400
        assert headers["WWW-Authenticate"] == 'Bearer realm="serverless-patterns", error="invalid_request"'
    # Another scheme is no bearer credential at all (RFC 6750 section 3.1): the bare challenge.
    for value in ("Basic dXNlcg==", "Negotiate abc"):
        status, _, headers = await publish({"authorization": value})
        assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="serverless-patterns"')
    assert topic.published == []


async def test_the_api_key_opens_publish_event_only_in_apikey_mode(issuer: LocalIssuer, topic: FakeEventGridPublisher,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert (await publish({"x-api-key": API_KEY}))[0] == 401
    set_env(monkeypatch, AUTH_MODE="apikey")
    assert (await publish({"x-api-key": API_KEY}))[0] == 202
    status, _, headers = await publish({"x-api-key": "wrong-key-0123456789"})
    assert (status, headers["WWW-Authenticate"]) == (401, 'APIKey realm="serverless-patterns", header="x-api-key"')
    status, _, headers = await greet({"x-api-key": "wrong-key-0123456789"})
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="serverless-patterns"')


async def test_allowed_tenants_refuse_a_token_without_or_with_another_tid(issuer: LocalIssuer, topic: FakeEventGridPublisher,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, AUTH_ALLOWED_TENANTS=OTHER_TENANT)
    status, body, _ = await publish(bearer(issuer.mint(roles=["Events.Publish"])))
    assert status == 401 and "tenant" in body["error"]
    without_tid = {k: v for k, v in issuer.claims(roles=["Events.Publish"]).items() if k != "tid"}
    assert (await publish(bearer(issuer.sign(without_tid))))[0] == 401
    set_env(monkeypatch, AUTH_ALLOWED_TENANTS=f"{OTHER_TENANT},{issuer.tenant}")
    assert (await publish(bearer(issuer.mint(roles=["Events.Publish"]))))[0] == 202


# ---------------------------------------------------------------------------- Easy Auth

def client_principal(roles: list[str], **claims: str) -> str:
    document = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles",
                "claims": [{"typ": "roles", "val": role} for role in roles]
                + [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "oid-1"}]
                + [{"typ": name, "val": value} for name, value in claims.items()]}
    return base64.b64encode(json.dumps(document).encode()).decode()


async def test_easyauth_mode_takes_the_platform_principal(issuer: LocalIssuer, topic: FakeEventGridPublisher,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, AUTH_MODE="easyauth", WEBSITE_AUTH_ENABLED="True")
    assert (await publish({"x-ms-client-principal": client_principal(["Events.Publish"])}))[0] == 202
    assert (await publish({"x-ms-client-principal": client_principal(["Orders.Read"])}))[0] == 403
    assert (await publish({}))[0] == 401
    assert (await publish({"x-ms-client-principal": "not base64 at all!"}))[0] == 401


async def test_a_forged_client_principal_grants_nothing_outside_easyauth_mode(
        issuer: LocalIssuer, topic: FakeEventGridPublisher, monkeypatch: pytest.MonkeyPatch) -> None:
    forged = {"x-ms-client-principal": client_principal(["Events.Publish"])}
    assert (await publish(forged))[0] == 401
    assert (await greet(forged))[0] == 401
    set_env(monkeypatch, AUTH_MODE="apikey")
    assert (await publish(forged))[0] == 401
    assert topic.published == []


# --------------------------------------------------------------------------- the signing keys

class FakeJwks:
    """A JWKS endpoint whose answers a test scripts; counts the fetches."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.calls = 0
        self.hang = False
        self.fail = False

    async def __call__(self, url: str, timeout: float) -> bytes:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail:
            from identity.jwks import JwksError

            raise JwksError("the key set answered HTTP 500")
        return self.body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def local_issuer(signing_key: Any) -> LocalIssuer:
    return LocalIssuer(signing_key, "http://127.0.0.1:1")


async def test_concurrent_first_requests_share_one_fetch(local_issuer: LocalIssuer) -> None:
    jwks = FakeJwks(json.dumps(local_issuer.jwks()).encode())
    keys = SigningKeys(["u"], jwks)
    found = await asyncio.gather(*(keys.key_for(local_issuer.kid) for _ in range(50)))
    assert jwks.calls == 1 and all(key is found[0] for key in found)


async def test_a_flood_of_forged_kids_costs_one_fetch_per_cooldown(local_issuer: LocalIssuer) -> None:
    clock = Clock()
    jwks = FakeJwks(json.dumps(local_issuer.jwks()).encode())
    keys = SigningKeys(["u"], jwks, clock=clock, cooldown=30)
    await keys.key_for(local_issuer.kid)
    for number in range(200):
        with pytest.raises(Unauthenticated):
            await keys.key_for(f"forged-{number}")
    assert jwks.calls == 1  # the keys were fetched within the cooldown: a forged kid refetches nothing
    clock.now += 31
    for number in range(200):
        with pytest.raises(Unauthenticated):
            await keys.key_for(f"forged-again-{number}")
    assert jwks.calls == 2  # one refetch for the first unknown kid past the cooldown, none for the rest


async def test_a_key_added_to_the_jwks_is_accepted_within_the_cooldown(local_issuer: LocalIssuer,
                                                                       signing_key: Any) -> None:
    clock = Clock()
    rotated = LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), local_issuer.base_url)
    jwks = FakeJwks(json.dumps(local_issuer.jwks()).encode())
    keys = SigningKeys(["u"], jwks, clock=clock, cooldown=30)
    await keys.key_for(local_issuer.kid)
    with pytest.raises(Unauthenticated):
        await keys.key_for(rotated.kid)
    jwks.body = json.dumps({"keys": local_issuer.jwks()["keys"] + rotated.jwks()["keys"]}).encode()
    with pytest.raises(Unauthenticated):
        await keys.key_for(rotated.kid)  # within the cooldown: no refetch yet
    clock.now += 31
    assert await keys.key_for(rotated.kid) is not None
    assert await keys.key_for(local_issuer.kid) is not None


@pytest.mark.parametrize("failure", ["garbage", "hang", "down", "no signing key"])
async def test_unreadable_keys_with_nothing_cached_are_a_503_never_a_pass_or_401(
        failure: str, local_issuer: LocalIssuer) -> None:
    jwks = FakeJwks(b"<html>oops</html>" if failure == "garbage" else json.dumps(
        {"keys": [{"kty": "RSA", "use": "enc", "kid": "k", "n": "AQAB", "e": "AQAB"}]}).encode())
    jwks.hang = failure == "hang"
    jwks.fail = failure == "down"
    keys = SigningKeys(["u"], jwks, timeout=0.2)
    started = time.perf_counter()
    with pytest.raises(SigningKeysUnavailable) as info:
        await keys.key_for(local_issuer.kid)
    assert info.value.retry_after >= 1 and time.perf_counter() - started < 2


async def test_publish_answers_503_with_retry_after_when_the_jwks_is_down(issuer: LocalIssuer,
                                                                        topic: FakeEventGridPublisher,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, AUTH_JWKS_URL=f"http://127.0.0.1:{free_port()}/nothing/keys")
    status, body, headers = await publish(bearer(issuer.mint(roles=["Events.Publish"])))
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert topic.published == []


async def test_a_failed_refresh_keeps_the_cached_keys(local_issuer: LocalIssuer) -> None:
    clock = Clock()
    jwks = FakeJwks(json.dumps(local_issuer.jwks()).encode())
    keys = SigningKeys(["u"], jwks, clock=clock, max_age=60)
    await keys.key_for(local_issuer.kid)
    jwks.fail = True
    clock.now += 120  # past max_age: a refresh is due and fails
    assert await keys.key_for(local_issuer.kid) is not None
    with pytest.raises(SigningKeysUnavailable):
        await keys.key_for("a-new-kid")  # could be a rotated key: the keys cannot tell, so no 401


def test_the_jwks_reader_keeps_rsa_signing_keys_only(local_issuer: LocalIssuer) -> None:
    key = local_issuer.jwks()["keys"][0]
    document = {"keys": [key, {**key, "kid": "enc", "use": "enc"}, {"kty": "EC", "kid": "ec"}, "junk",
                         {**key, "kid": "bad", "n": "!!"}]}
    assert set(parse_jwks(json.dumps(document).encode())) == {local_issuer.kid}


# ------------------------------------------------------------------------------ settings

@pytest.mark.parametrize(("values", "named"), [
    ({"AUTH_MODE": "tokens"}, "AUTH_MODE"),
    ({"AUTH_MODE": "entra", "AUTH_AUDIENCE": "api://x"}, "AUTH_TENANT_ID"),
    ({"AUTH_MODE": "entra", "AUTH_TENANT_ID": "not-a-guid", "AUTH_AUDIENCE": "api://x"}, "AUTH_TENANT_ID"),
    ({"AUTH_MODE": "entra", "AUTH_TENANT_ID": OTHER_TENANT}, "AUTH_AUDIENCE"),
    ({"AUTH_MODE": "entra", "AUTH_TENANT_ID": OTHER_TENANT, "AUTH_AUDIENCE": " , "}, "AUTH_AUDIENCE"),
    ({"AUTH_MODE": "entra", "AUTH_TENANT_ID": OTHER_TENANT, "AUTH_AUDIENCE": "a", "AUTH_ISSUER": "http://evil/"}, "AUTH_ISSUER"),
    ({"AUTH_MODE": "entra", "AUTH_TENANT_ID": OTHER_TENANT, "AUTH_AUDIENCE": "a", "AUTH_JWKS_URL": "ftp://x"}, "AUTH_JWKS_URL"),
    ({"AUTH_MODE": "entra", "AUTH_TENANT_ID": OTHER_TENANT, "AUTH_AUDIENCE": "a", "AUTH_ALLOWED_TENANTS": "x"},
     "AUTH_ALLOWED_TENANTS"),
])
def test_a_missing_or_malformed_auth_setting_is_named(values: dict[str, str], named: str) -> None:
    with pytest.raises(settings.ConfigurationError, match=named):
        settings.auth_settings(values)


def test_the_tenant_gives_both_issuers_and_both_key_sets() -> None:
    cfg = settings.auth_settings({"AUTH_MODE": "entra", "AUTH_TENANT_ID": OTHER_TENANT, "AUTH_AUDIENCE": "api://a, b"})
    assert cfg.audiences == ("api://a", "b")
    assert cfg.issuers == (f"https://sts.windows.net/{OTHER_TENANT}/", f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")
    assert cfg.jwks_urls == (f"https://login.microsoftonline.com/{OTHER_TENANT}/discovery/v2.0/keys",
                             f"https://login.microsoftonline.com/{OTHER_TENANT}/discovery/keys")


async def test_a_missing_auth_setting_is_a_500_that_names_it_in_the_log(topic: FakeEventGridPublisher,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    set_env(monkeypatch, API_KEY=API_KEY, EVENT_GRID_TOPIC_ENDPOINT=TOPIC)
    with caplog.at_level(logging.ERROR):
        status, body, _ = await publish({"authorization": "Bearer a.b.c"})
    assert (status, body) == (500, {"error": "Internal server error"})
    assert "AUTH_TENANT_ID" in caplog.text


def test_the_issuer_key_file_is_private(tmp_path: Path) -> None:
    from devhost.issuer import load_or_create_key

    path = tmp_path / "k" / "key.pem"
    load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path).private_numbers() is not None  # read back, not regenerated


# ---------------------------------------------------------------------- validated tokens

def auth_cfg(local: LocalIssuer, **extra: str) -> settings.AuthSettings:
    return settings.auth_settings({"AUTH_MODE": "entra", "AUTH_TENANT_ID": local.tenant, "AUTH_AUDIENCE": DEFAULT_AUDIENCE,
                                   "AUTH_ISSUER": local.issuer, "AUTH_JWKS_URL": local.jwks_url, **extra})


async def test_a_cached_validation_ends_when_the_token_expires(local_issuer: LocalIssuer) -> None:
    from identity import validate_token

    jwks = FakeJwks(json.dumps(local_issuer.jwks()).encode())
    keys = SigningKeys(["u"], jwks)
    token = local_issuer.mint(lifetime=600)
    cfg = auth_cfg(local_issuer)
    now = time.time()
    assert (await validate_token(token, cfg=cfg, keys=keys, now=lambda: now)).object_id
    assert await validate_token(token, cfg=cfg, keys=keys, now=lambda: now + 300)  # from the cache
    with pytest.raises(Unauthenticated, match="expired"):
        await validate_token(token, cfg=cfg, keys=keys, now=lambda: now + 600 + 121)


async def test_a_cached_validation_ends_when_its_key_is_no_longer_published(local_issuer: LocalIssuer) -> None:
    from identity import validate_token

    clock = Clock()
    jwks = FakeJwks(json.dumps(local_issuer.jwks()).encode())
    keys = SigningKeys(["u"], jwks, clock=clock, max_age=60)
    token, cfg = local_issuer.mint(), auth_cfg(local_issuer)
    await validate_token(token, cfg=cfg, keys=keys)
    other = LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), local_issuer.base_url)
    jwks.body = json.dumps(other.jwks()).encode()  # an emergency rollover: the old key is gone
    clock.now += 61
    await keys.key_for(other.kid)  # the next refresh
    with pytest.raises(Unauthenticated, match="does not publish"):
        await validate_token(token, cfg=cfg, keys=keys)


async def test_a_cached_validation_is_not_reused_under_other_settings(local_issuer: LocalIssuer) -> None:
    from identity import validate_token

    keys = SigningKeys(["u"], FakeJwks(json.dumps(local_issuer.jwks()).encode()))
    token = local_issuer.mint()
    await validate_token(token, cfg=auth_cfg(local_issuer), keys=keys)
    with pytest.raises(Unauthenticated, match="tenant"):
        await validate_token(token, cfg=auth_cfg(local_issuer, AUTH_ALLOWED_TENANTS=OTHER_TENANT), keys=keys)


def test_the_validated_tokens_are_bounded() -> None:
    from identity.principal import Principal
    from identity.tokens import ValidatedTokens

    cache = ValidatedTokens()
    cfg = settings.auth_settings({"AUTH_MODE": "apikey"})
    for number in range(ValidatedTokens.MAX_ENTRIES + 50):
        cache.put(cache.key(cfg, f"t{number}"), Principal(method="entra"), 1e12, "k", None)
    assert len(cache._entries) == ValidatedTokens.MAX_ENTRIES
    assert cache.key(cfg, "t0") not in cache._entries and cache.key(cfg, "t4145") in cache._entries


# ------------------------------------------------------------ review findings (each a regression)

async def test_a_key_set_sent_in_several_writes_is_read_whole(local_issuer: LocalIssuer) -> None:
    """A JWKS that arrives in pieces (chunked, several TLS records) was cut at the first one."""
    from aiohttp import web

    from identity.jwks import http_fetch

    body = json.dumps({"keys": local_issuer.jwks()["keys"] * 40}).encode()  # ~15 KB

    async def slowly(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for start in range(0, len(body), 1000):
            await response.write(body[start:start + 1000])
            await asyncio.sleep(0.005)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/keys", slowly)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        assert await http_fetch(f"http://127.0.0.1:{port}/keys", 5.0) == body
        assert local_issuer.kid in parse_jwks(body)
    finally:
        await loop_cache.aclose_all()
        await runner.cleanup()


async def test_stale_keys_with_the_jwks_down_cost_no_fetch_per_request(local_issuer: LocalIssuer) -> None:
    clock = Clock()
    jwks = FakeJwks(json.dumps(local_issuer.jwks()).encode())
    keys = SigningKeys(["u"], jwks, clock=clock, max_age=60, cooldown=30)
    await keys.key_for(local_issuer.kid)
    jwks.fail = True
    clock.now += 120
    for _ in range(20):  # known kid: served at once from the stale keys, refreshed behind
        assert await keys.key_for(local_issuer.kid) is not None
        await asyncio.sleep(0.02)
    assert jwks.calls == 2  # the first fetch, and one background refresh (5 s backoff)
    for number in range(20):  # forged kids during the outage: no fetch each, a 503 (the keys cannot tell)
        with pytest.raises(SigningKeysUnavailable):
            await keys.key_for(f"forged-{number}")
    assert jwks.calls == 2


async def test_a_cached_validation_ends_when_the_keys_are_stale_or_the_kid_changes_key(
        local_issuer: LocalIssuer) -> None:
    from identity import validate_token

    token, cfg = local_issuer.mint(), auth_cfg(local_issuer)
    clock = Clock()
    stale = SigningKeys(["u"], FakeJwks(json.dumps(local_issuer.jwks()).encode()), clock=clock, max_age=60)
    await validate_token(token, cfg=cfg, keys=stale)
    assert stale.validated.get(stale.validated.key(cfg, token), time.time(), stale) is not None
    clock.now += 61  # past the keys' age: the cache no longer vouches, the full path runs
    assert stale.validated.get(stale.validated.key(cfg, token), time.time(), stale) is None

    clock = Clock()
    jwks = FakeJwks(json.dumps(local_issuer.jwks()).encode())
    keys = SigningKeys(["u"], jwks, clock=clock, max_age=3600, cooldown=30)
    await validate_token(token, cfg=cfg, keys=keys)
    assert keys.validated.get(keys.validated.key(cfg, token), time.time(), keys) is not None
    impostor = LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), local_issuer.base_url)
    republished = impostor.jwks()
    republished["keys"][0]["kid"] = local_issuer.kid  # the same kid, other key material
    jwks.body = json.dumps(republished).encode()
    clock.now += 31
    with pytest.raises(Unauthenticated):
        await keys.key_for("unknown-kid")  # past the cooldown: a refresh, which brings the new material
    assert keys.validated.get(keys.validated.key(cfg, token), time.time(), keys) is None
    with pytest.raises(Unauthenticated, match="signature"):
        await validate_token(token, cfg=cfg, keys=keys)  # verified again, against the key published now


async def test_an_id_token_is_not_an_access_token(issuer: LocalIssuer, topic: FakeEventGridPublisher) -> None:
    """An ID token for the client id (aud = client id, no azp/appid) must not open the API."""
    claims = issuer.claims(roles=["Events.Publish"], audience="client-guid")
    del claims["azp"]
    claims["nonce"] = "n-1"
    status, body, _ = await publish(bearer(issuer.sign(claims)))
    assert status == 401 and "not an access token" in body["error"]


async def test_easyauth_needs_the_platform_and_keeps_the_tenant_allow_list(
        issuer: LocalIssuer, topic: FakeEventGridPublisher, monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, AUTH_MODE="easyauth")  # WEBSITE_AUTH_ENABLED not set: Easy Auth is not in front
    assert (await publish({"x-ms-client-principal": client_principal(["Events.Publish"])}))[:2] == (
        500, {"error": "Internal server error"})
    with pytest.raises(settings.ConfigurationError, match="AUTH_MODE.*WEBSITE_AUTH_ENABLED"):
        settings.auth_settings({"AUTH_MODE": "easyauth"})
    set_env(monkeypatch, WEBSITE_AUTH_ENABLED="True", AUTH_ALLOWED_TENANTS=OTHER_TENANT)
    tid = "http://schemas.microsoft.com/identity/claims/tenantid"
    assert (await publish({"x-ms-client-principal": client_principal(["Events.Publish"], **{tid: issuer.tenant})}))[0] == 401
    assert (await publish({"x-ms-client-principal": client_principal(["Events.Publish"], **{tid: OTHER_TENANT})}))[0] == 202
    google = json.loads(base64.b64decode(client_principal(["Events.Publish"], **{tid: OTHER_TENANT})))
    google["auth_typ"] = "google"
    forged = base64.b64encode(json.dumps(google).encode()).decode()
    assert (await publish({"x-ms-client-principal": forged}))[0] == 401
    deep = base64.b64encode(b"[" * 12000).decode()
    assert (await publish({"x-ms-client-principal": deep}))[0] == 401  # not a 500
