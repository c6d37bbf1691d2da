"""Property-based tests of HttpGreeting's request surface (issue 14).

Invariants pinned here, for any method, query string, body and API key a caller can send:
- the reply is a 200, 400, 401 or 413 (never a 5xx for client input), its body a JSON object holding
  ``message`` (200) or a non-empty ``error`` (4xx) and nothing else;
- a 200 only with the right key and a valid name, and then exactly ``Hello, <name>``; what is
  expected is derived here from the contract (docs/http-api.md, greeting.py's docstrings), not by calling
  the module's own helpers;
- a 400's error is specific: it says what was wrong with ``name`` or the body;
- the configured API key never appears in the response body, its headers or the log text.

The request is driven both through ``HttpGreeting.main`` with an ``azure.functions.HttpRequest``
(what the worker builds) and through ``greeting.respond`` with a ``GreetingRequest`` (the pure logic,
with the key loader injected).
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from typing import Any

import azure.functions as func
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import HttpGreeting
from common import settings
from common.http_api import CallerCheck
from common.logs import bind_invocation
from HttpGreeting.greeting import ACCESS, MAX_BODY_BYTES, MAX_NAME_LENGTH, GreetingRequest, respond
from tests.conftest import FakeContext, set_env
from tests.properties.oracle import Refused, strict_document

#: Computed, not written out: hypothesis draws text from the string literals of the code under test,
#: and a literal key could come back as a generated name (echoing the caller's own input is no leak).
CONFIGURED_KEY = "gk-" + hashlib.sha256(b"issue 14: property tests of HttpGreeting").hexdigest()[:32]
#: Anything this long of the key is a leak, not only the whole of it.
KEY_FRAGMENTS = (CONFIGURED_KEY, CONFIGURED_KEY[:-1], CONFIGURED_KEY[1:])

# ----------------------------------------------------------------------------------- strategies

#: Any code point, lone surrogates and C0 controls included (st.text() leaves surrogates out).
WILD_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.characters(max_codepoint=31))


def wild_text(max_size: int = 20, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.one_of(st.text(min_size=min_size, max_size=max_size),
                     st.lists(WILD_CHAR, min_size=min_size, max_size=max_size).map("".join))


#: Names a caller might send: mostly plausible, some at and past the length limit, some hostile.
NAMES = st.one_of(
    st.text(min_size=1, max_size=30),
    st.text(st.characters(codec="ascii", min_codepoint=32), min_size=MAX_NAME_LENGTH - 2, max_size=MAX_NAME_LENGTH + 2),
    st.sampled_from(["Ada", " Ada ", "", "   ", "\u3000", "Zoë 李", "Ada\nLovelace", "A\x7f", "A\x85", "\ud800",
                     "A\udfffB", "\U0001F600", "n" * MAX_NAME_LENGTH, " " + "n" * MAX_NAME_LENGTH + " "]),
    wild_text(40),
)

JSON_INTS = st.one_of(st.integers(), st.integers(min_value=-(10**120), max_value=10**120))
FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | JSON_INTS | FINITE_FLOATS | text
    return st.recursive(scalars, lambda children: st.lists(children, max_size=5)
                        | st.dictionaries(text, children, max_size=5), max_leaves=20)


JSON_VALUES = json_values(wild_text(12))
#: Objects with a ``name`` of any JSON type, next to other fields.
NAMED_OBJECTS = st.builds(lambda name, rest: {**rest, "name": name},
                          st.one_of(NAMES, NAMES, JSON_VALUES), st.dictionaries(wild_text(8), JSON_VALUES, max_size=3))


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    """A JSON document as a client library would write it: escaped or raw UTF-8, compact or indented."""
    value = draw(st.one_of(NAMED_OBJECTS, JSON_VALUES))
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 2])))
    # Raw UTF-8 cannot carry a lone surrogate: its bytes come out as invalid UTF-8, which is input too.
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + text.encode("utf-8", "surrogatepass")


#: Bodies that break one of the strict reader's rules (or the size limit), each with what its 400 must
#: say. Most carry a valid name, so only the pathology can make the request fail.
PATHOLOGIES = st.one_of(
    st.integers(64, 5000).map(lambda d: (b'{"name": "Ada", "x": ' + b"[" * d + b"]" * d + b"}", "nests JSON too deeply")),
    st.integers(65, MAX_BODY_BYTES).map(lambda d: (b"[" * d, "nests JSON too deeply")),
    st.integers(64, 2000).map(lambda d: (b'{"a": ' * d + b'{"name": "Ada"}' + b"}" * d, "nests JSON too deeply")),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]).map(
        lambda c: (b'{"name": "Ada", "x": [1, ' + c + b"]}", "not a JSON number")),
    st.integers(4301, 6000).map(lambda n: (b'{"name": "Ada", "n": -' + b"7" * n + b"}", "a number is too long")),
    st.sampled_from([b"1e400", b"-1e309", b"1" + b"0" * 400 + b".5", b"2.5E+999"]).map(
        lambda n: (b'{"x": ' + n + b', "name": "Ada"}', "outside the range of a double")),
    st.integers(0xD800, 0xDFFF).map(
        lambda cp: (b'{"name": "Ad' + f"\\u{cp:04x}".encode() + b'a"}', "unpaired UTF-16 surrogates")),
    st.just((b'{"name": "Ada", "name": "\\ud800"}', "unpaired UTF-16 surrogates")),  # the last duplicate wins
    st.binary(min_size=1).map(lambda b: (b'{"name": "Ada", "x": "' + b"\xff" + b + b'"}', "not valid UTF-8")),
    st.integers(1, 2000).map(lambda n: (b'{"name": "' + b"a" * (MAX_BODY_BYTES + n) + b'"}', "at most 65536 bytes")),
)

BODIES = st.one_of(st.just(b""), st.binary(max_size=100), json_bodies(), json_bodies(), PATHOLOGIES.map(lambda p: p[0]))
METHODS = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get", ""]), wild_text(10))
PARAMS: st.SearchStrategy[dict[str, str]] = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"name": NAMES}),
    st.dictionaries(st.one_of(st.just("name"), st.just("Name"), wild_text(8)), wild_text(120), max_size=4),
)
#: Wrong keys: near misses of the configured one, and any text (lone surrogates included).
WRONG_KEYS = st.one_of(
    st.sampled_from(["", CONFIGURED_KEY[:-1], CONFIGURED_KEY + "x", CONFIGURED_KEY.upper(), " " + CONFIGURED_KEY,
                     CONFIGURED_KEY + "\x00", CONFIGURED_KEY + "\ud800", "x" * 10_000]),
    st.text(max_size=40),
    wild_text(40),
)
KEYS = st.one_of(st.just(CONFIGURED_KEY), st.just(CONFIGURED_KEY), st.none(), WRONG_KEYS)
CORRELATION_IDS = st.one_of(st.none(), st.just("abc-123"), wild_text(140))


# ------------------------------------------------------------------------- the contract, restated

def valid_name(value: Any) -> str | None:
    """The greeted name for ``value``, or None when the contract says it is a 400."""
    if not isinstance(value, str):
        return None
    name = value.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        return None
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return None
    return name


def expected_name(params: dict[str, str], body: bytes) -> str | None:
    """Who a caller with the right key is greeted as, or None for a 400."""
    if "name" in params:
        return valid_name(params["name"])
    if not body.strip() or len(body) > MAX_BODY_BYTES:
        return None
    try:
        document = strict_document(body)
    except Refused:
        return None
    if not isinstance(document, dict) or "name" not in document:
        return None
    return valid_name(document["name"])


def expected_refusal(params: dict[str, str], body: bytes) -> int:
    """The status of a request the contract refuses: 413 for a body over the bound (read only when
    the query string has no name), else 400."""
    return 413 if "name" not in params and body.strip() and len(body) > MAX_BODY_BYTES else 400


def assert_well_formed(status: int, body: Any) -> None:
    assert status in (200, 400, 401, 413), f"status {status}: {body}"
    assert isinstance(body, dict)
    if status == 200:
        assert list(body) == ["message"] and isinstance(body["message"], str)
    else:
        assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"].strip()
    if status in (400, 413):  # specific: it names the field or the body that was wrong
        assert "'name'" in body["error"] or "Request body" in body["error"], body["error"]
    if status == 401:
        assert "x-api-key" in body["error"]


def assert_no_key_in(*texts: str) -> None:
    for text in texts:
        for fragment in KEY_FRAGMENTS:
            assert fragment not in text


# ------------------------------------------------------------------------------------- drivers

def http_request(method: str, params: dict[str, str], body: bytes, key: str | None,
                 correlation_id: str | None) -> func.HttpRequest:
    headers = {}
    if key is not None:
        headers["x-api-key"] = key
    if correlation_id is not None:
        headers["x-correlation-id"] = correlation_id
    return func.HttpRequest(method, "http://localhost:7071/api/HttpGreeting", headers=headers, params=params, body=body)


async def call_main(req: func.HttpRequest) -> tuple[int, Any, func.HttpResponse]:
    response = await HttpGreeting.main(req, FakeContext(function_name="HttpGreeting"))
    raw = response.get_body()
    return response.status_code, json.loads(raw.decode("utf-8")), response


async def configured_key() -> str:
    return CONFIGURED_KEY


async def call_respond(request: GreetingRequest) -> tuple[int, Any, dict[str, str]]:
    callers = CallerCheck(ACCESS, read_auth=settings.auth_settings, load_api_key=configured_key)
    reply = await respond(request, invocation_id="inv-1", log=bind_invocation(FakeContext(function_name="HttpGreeting")),
                          callers=callers)
    return reply.status, json.loads(reply.body_json()), reply.headers


@pytest.fixture
def local_key(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, API_KEY=CONFIGURED_KEY)


# ------------------------------------------------------------------------------------ properties

@given(method=METHODS, params=PARAMS, body=BODIES, key=KEYS, correlation_id=CORRELATION_IDS)
async def test_any_request_gets_200_400_401_or_413_with_a_json_object_and_never_the_key(
        local_key: None, caplog: pytest.LogCaptureFixture, method: str, params: dict[str, str], body: bytes,
        key: str | None, correlation_id: str | None) -> None:
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        status, payload, response = await call_main(http_request(method, params, body, key, correlation_id))
    assert_well_formed(status, payload)
    headers = " ".join(f"{k}: {v}" for k, v in response.headers.items())
    assert_no_key_in(response.get_body().decode("utf-8"), headers, caplog.text)


@given(method=METHODS, params=PARAMS, body=BODIES, key=KEYS)
async def test_a_200_only_with_the_right_key_and_a_valid_name(method: str, params: dict[str, str], body: bytes,
                                                              key: str | None) -> None:
    status, payload, _ = await call_respond(GreetingRequest(method, params, body, key))
    event(f"status {status}")
    if key != CONFIGURED_KEY:
        assert status == 401, payload
        return
    name = expected_name(params, body)
    if name is None:
        assert status == expected_refusal(params, body), payload
    else:
        assert (status, payload) == (200, {"message": f"Hello, {name}"})


@given(body=json_bodies(), key=st.just(CONFIGURED_KEY))
async def test_a_json_body_is_judged_by_its_name_field_alone(body: bytes, key: str) -> None:
    status, payload, _ = await call_respond(GreetingRequest("POST", {}, body, key))
    event(f"status {status}")
    assert_well_formed(status, payload)
    name = expected_name({}, body)
    assert (status, payload) == ((200, {"message": f"Hello, {name}"}) if name is not None
                                 else (expected_refusal({}, body), payload))


@given(pathology=PATHOLOGIES)
async def test_pathological_json_gets_a_specific_400(local_key: None, pathology: tuple[bytes, str]) -> None:
    body, fragment = pathology
    status, payload, _ = await call_main(http_request("POST", {}, body, CONFIGURED_KEY, None))
    assert status == expected_refusal({}, body), payload
    assert_well_formed(status, payload)
    assert fragment in payload["error"]


@given(pathology=PATHOLOGIES, key=st.one_of(st.none(), WRONG_KEYS))
async def test_without_the_right_key_nothing_about_the_body_is_revealed(local_key: None, pathology: tuple[bytes, str],
                                                                       key: str | None) -> None:
    status, payload, _ = await call_main(http_request("POST", {}, pathology[0], key, None))
    assert (status, payload) == (401, {"error": "Missing or invalid API key (header 'x-api-key')."})


@given(name=NAMES, body=BODIES)
async def test_the_query_name_wins_over_the_body(local_key: None, name: str, body: bytes) -> None:
    status, payload, _ = await call_main(http_request("GET", {"name": name}, body, CONFIGURED_KEY, None))
    expected = valid_name(name)
    assert (status, payload) == ((200, {"message": f"Hello, {expected}"}) if expected is not None else (400, payload))


@given(params=PARAMS, body=BODIES, key=KEYS)
async def test_with_no_key_configured_every_request_is_a_401(caplog: pytest.LogCaptureFixture, params: dict[str, str],
                                                             body: bytes, key: str | None) -> None:
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        status, payload, _ = await call_main(http_request("POST", params, body, key, None))
    assert status == 401 and "x-api-key" in payload["error"]
    assert "key_not_configured" in caplog.text


@given(key=st.tuples(wild_text(10), st.characters(categories=["Cs"]), wild_text(10)).map("".join),
       params=st.just({"name": "Ada"}))
async def test_an_api_key_with_a_lone_surrogate_is_a_401_not_a_500(local_key: None, key: str,
                                                                   params: dict[str, str]) -> None:
    """Found by this suite: keys_match encoded the header as strict UTF-8, so such a key was a 500."""
    status, payload, _ = await call_main(http_request("GET", params, b"", key, None))
    assert (status, payload) == (401, {"error": "Missing or invalid API key (header 'x-api-key')."})
