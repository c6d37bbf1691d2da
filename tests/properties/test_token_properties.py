"""Property-based tests of the token surface (identity/): whatever a caller puts in ``Authorization``.

Invariants, for any header value, any token built from a valid one by changing its header, its
claims or any one character, and any claims an issuer could sign:
- the answer is a 400, 401 or 403 (never a pass, never a 5xx) unless the token is the valid one;
- a 400 or 401 carries ``WWW-Authenticate: Bearer`` (with ``error=`` unless there were no credentials);
- the logic is never reached (nothing is published), and the token never appears in the reply or the log;
- a token whose claims are signed correctly passes exactly when its ``iss``, ``aud``, ``exp``/``nbf``/``iat``
  and roles meet the rules, decided here from the rules, not by the code under test.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import PublishEvent
from devhost.issuer import DEFAULT_AUDIENCE, LocalIssuer
from identity import SigningKeys
from tests.conftest import FakeContext, set_env, use_fake_clients
from tests.fakes import FakeEventGridPublisher

TOPIC = "https://props-topic.westeurope-1.eventgrid.azure.net/api/events"
_ISSUER: LocalIssuer | None = None


def issuer() -> LocalIssuer:
    global _ISSUER
    if _ISSUER is None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        _ISSUER = LocalIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "http://127.0.0.1:9")
    return _ISSUER


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FakeEventGridPublisher:
    """PublishEvent with AUTH_MODE=entra; the signing keys served from memory, as the JWKS would."""
    local = issuer()
    topic = FakeEventGridPublisher()
    use_fake_clients(monkeypatch, event_grid=topic)
    set_env(monkeypatch, AUTH_MODE="entra", AUTH_TENANT_ID=local.tenant, AUTH_AUDIENCE=DEFAULT_AUDIENCE,
            AUTH_ISSUER=local.issuer, AUTH_JWKS_URL=local.jwks_url, EVENT_GRID_TOPIC_ENDPOINT=TOPIC)
    body = json.dumps(local.jwks()).encode()

    async def fetch(url: str, timeout: float) -> bytes:
        return body

    keys = SigningKeys([local.jwks_url], fetch)
    monkeypatch.setattr("identity.signing_keys", lambda urls: keys)
    return topic


async def publish(authorization: str | None, topic: FakeEventGridPublisher) -> tuple[int, str, dict[str, str]]:
    topic.published.clear()  # one fixture serves every example: each starts with nothing published
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    req = func.HttpRequest("POST", "http://localhost:7071/api/events", headers=headers, params={}, body=b'{"a": 1}')
    response = await PublishEvent.main(req, FakeContext(function_name="PublishEvent"))
    return response.status_code, response.get_body().decode(), dict(response.headers)


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def check_refused(status: int, body: str, headers: dict[str, str], topic: FakeEventGridPublisher, token: str,
                  log: str) -> None:
    assert status in (400, 401, 403), (status, body)
    challenge = headers.get("WWW-Authenticate", "")
    assert challenge.startswith('Bearer realm="serverless-patterns"'), headers
    assert status == 401 or "error=" in challenge
    assert topic.published == []
    if len(token) > 12:
        assert token not in body and token not in log and token not in challenge


PROPERTY_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                             deadline=None)

HEADERS = st.one_of(
    st.text(max_size=80),
    st.builds(lambda t: "Bearer " + t, st.text(max_size=80)),
    st.builds(lambda t: "bearer " + t, st.from_regex(r"[A-Za-z0-9_\-]{0,20}\.[A-Za-z0-9_\-]{0,20}\.[A-Za-z0-9_\-]{0,20}",
                                                     fullmatch=True)),
    st.sampled_from(["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a.b.c, Bearer d.e.f", "Bearer \x00.\x00.\x00",
                     "Bearer " + "a" * 17000, "Negotiate x", "Bearer eyJhbGciOiJub25lIn0.e30."]),
)


@PROPERTY_SETTINGS
@given(value=HEADERS)
async def test_any_authorization_header_is_refused_with_a_challenge(app: FakeEventGridPublisher, value: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        status, body, headers = await publish(value, app)
    event(f"status {status}")
    check_refused(status, body, headers, app, value, caplog.text)


@PROPERTY_SETTINGS
@given(position=st.integers(min_value=0), replacement=st.sampled_from("AQgw_-xZ09"))
async def test_one_changed_character_of_a_valid_token_is_refused(app: FakeEventGridPublisher, position: int,
                                                                 replacement: str, caplog: pytest.LogCaptureFixture) -> None:
    valid = issuer().mint(roles=["Events.Publish"])
    index = position % len(valid)
    if valid[index] == "." or valid[index] == replacement:
        return
    changed = valid[:index] + replacement + valid[index + 1:]
    if base64.urlsafe_b64decode(changed.split(".")[-1] + "==") == base64.urlsafe_b64decode(valid.split(".")[-1] + "=="):
        return  # the last character's low bits are padding: the same signature bytes
    with caplog.at_level(logging.INFO):
        status, body, headers = await publish(f"Bearer {changed}", app)
    check_refused(status, body, headers, app, changed, caplog.text)


@PROPERTY_SETTINGS
@given(alg=st.sampled_from(["none", "HS256", "HS512", "RS384", "RS512", "PS256", "ES256", "rs256", ""]),
       kid=st.one_of(st.none(), st.text(max_size=10)))
async def test_a_header_other_than_rs256_is_refused_before_any_key_is_used(app: FakeEventGridPublisher, alg: str,
                                                                           kid: str | None) -> None:
    local = issuer()
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signature = local.mint(roles=["Events.Publish"]).split(".")[2]
    token = f"{b64(header)}.{b64(local.claims(roles=['Events.Publish']))}.{signature}"
    status, body, headers = await publish(f"Bearer {token}", app)
    check_refused(status, body, headers, app, token, "")
    assert status == 401


NOW = time.time()
OFFSETS = st.integers(min_value=-3 * 86400, max_value=3 * 86400)


@PROPERTY_SETTINGS
@given(iss=st.sampled_from(["own", "other tenant", "v1 form", "trailing slash", "missing"]),
       aud=st.sampled_from(["own", "other", "list with own", "missing"]),
       exp=st.one_of(st.none(), OFFSETS), nbf=st.one_of(st.none(), OFFSETS), iat=st.one_of(st.none(), OFFSETS),
       roles=st.lists(st.sampled_from(["Events.Publish", "Orders.Read", "events.publish", ""]), max_size=3))
@example(iss="own", aud="own", exp=3600, nbf=0, iat=0, roles=["Events.Publish"])
@example(iss="own", aud="list with own", exp=60, nbf=None, iat=None, roles=["Orders.Read", "Events.Publish"])
@example(iss="own", aud="own", exp=3600, nbf=0, iat=0, roles=["events.publish"])
@example(iss="own", aud="own", exp=-60, nbf=0, iat=-3600, roles=["Events.Publish"])
async def test_signed_claims_pass_exactly_when_they_meet_the_rules(
        app: FakeEventGridPublisher, iss: str, aud: str, exp: int | None, nbf: int | None, iat: int | None,
        roles: list[str]) -> None:
    local = issuer()
    now = int(time.time())
    claims: dict[str, Any] = {"tid": local.tenant, "oid": "o", "sub": "s", "azp": "c"}
    issuers = {"own": local.issuer, "other tenant": local.issuer_for("11111111-2222-4333-8444-555555555555"),
               "v1 form": f"https://sts.windows.net/{local.tenant}/", "trailing slash": local.issuer + "/"}
    if iss != "missing":
        claims["iss"] = issuers[iss]
    audiences: dict[str, Any] = {"own": DEFAULT_AUDIENCE, "other": "api://other", "list with own": ["x", DEFAULT_AUDIENCE]}
    if aud != "missing":
        claims["aud"] = audiences[aud]
    for name, offset in (("exp", exp), ("nbf", nbf), ("iat", iat)):
        if offset is not None:
            claims[name] = now + offset
    if roles:
        claims["roles"] = roles
    skew = 120
    margin = 5  # seconds away from an edge, so the clock moving during the test cannot flip the oracle
    if any(offset is not None and abs(abs(offset) - skew) < margin for offset in (exp, nbf, iat)):
        return
    authentic = (iss == "own" and aud in ("own", "list with own") and exp is not None and exp > -skew
                 and (nbf is None or nbf < skew) and (iat is None or iat < skew))
    expected = (202 if "Events.Publish" in roles else 403) if authentic else 401
    status, body, headers = await publish(f"Bearer {local.sign(claims)}", app)
    event(f"expected {expected}")
    assert status == expected, (claims, body)
    if expected != 202:
        check_refused(status, body, headers, app, "", "")
    else:
        assert len(app.published) == 1
