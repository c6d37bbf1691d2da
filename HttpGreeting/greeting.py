"""The HTTP greeting: authorize the caller, read and validate ``name``, reply in JSON.

Pure logic: it receives the request's parts and a way to load the expected
API key, and returns a :class:`Reply`. ``__init__.main`` maps the Functions
request and response types onto these.
"""

from __future__ import annotations

import hmac
import json
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common import settings, strict_json, telemetry
from common.errors import InvalidInput
from common.logs import InvocationLog
from common.timing import elapsed_ms
from common.secrets import SecretUnavailableError, get_secret

MAX_NAME_LENGTH = 100
MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = 30
#: One answer for a missing key, a wrong key and no key configured: the caller learns nothing more.
UNAUTHORIZED = {"error": "Missing or invalid API key (header 'x-api-key')."}
_SANE_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

KeyLoader = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class GreetingRequest:
    method: str
    params: Mapping[str, str]
    body: bytes
    api_key: str | None
    caller_correlation_id: str | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def body_json(self) -> str:
        return json.dumps(self.body, ensure_ascii=False)


class BadRequest(InvalidInput):
    """The request cannot be served as sent (a 400); the message tells the caller why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, reason="bad_request")


#: What the caller is told for each way a body breaks the strict JSON reader's rules.
_BODY_ERRORS = {
    "not_utf8": "Request body {detail}.",
    "too_deep": "Request body nests JSON too deeply: it {detail}.",
    "number_too_long": "Request body is not valid JSON: a number is too long ({detail}).",
}


def correlation_id_for(caller_value: str | None, invocation_id: str) -> str:
    """The caller's correlation id when it is a sane token, else the invocation id."""
    if caller_value and _SANE_CORRELATION_ID.fullmatch(caller_value):
        return caller_value
    return invocation_id


def validate_name(value: object) -> str:
    if not isinstance(value, str):
        raise BadRequest("'name' must be a string.")
    name = value.strip()
    if not name:
        raise BadRequest("'name' must not be empty.")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"'name' must be at most {MAX_NAME_LENGTH} characters long.")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BadRequest("'name' must not contain control characters.")
    if strict_json.has_unpaired_surrogate(name):
        raise BadRequest("'name' must not contain unpaired UTF-16 surrogates.")
    return name


def extract_name(params: Mapping[str, str], body: bytes) -> str:
    """``name`` from the query string, else from a JSON body ``{"name": ...}``."""
    if "name" in params:
        return validate_name(params["name"])
    if not body or not body.strip():
        raise BadRequest("Missing 'name': pass it in the query string (?name=...) or as a JSON body {\"name\": \"...\"}.")
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"Request body must be at most {MAX_BODY_BYTES} bytes.")
    try:
        payload = strict_json.loads(body)
    except strict_json.JsonInputError as exc:
        raise BadRequest(_BODY_ERRORS.get(exc.reason, "Request body {detail}.").format(detail=exc.detail)) from None
    if not isinstance(payload, dict):
        raise BadRequest("Request body must be a JSON object such as {\"name\": \"Ada\"}.")
    if "name" not in payload:
        raise BadRequest("Missing 'name': pass it in the query string (?name=...) or as a JSON body {\"name\": \"...\"}.")
    return validate_name(payload["name"])


async def load_configured_api_key() -> str | None:
    """The API key from Key Vault (or, locally, the API_KEY app setting)."""
    cfg = settings.greeting_settings()
    return await get_secret(cfg.api_key_secret_name, local_setting=cfg.local_api_key_setting)


def keys_match(provided: str, expected: str) -> bool:
    """Constant-time comparison, so timing does not reveal how much of the key matched.

    ``surrogatepass``: a header may carry half of a UTF-16 pair; it is just a wrong key.
    """
    return hmac.compare_digest(provided.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


async def respond(
    request: GreetingRequest,
    *,
    invocation_id: str,
    log: InvocationLog,
    load_api_key: KeyLoader = load_configured_api_key,
) -> Reply:
    """The reply to one request. Raises nothing: every outcome is a status.

    Errors (:mod:`common.errors`) become statuses here: :class:`~common.errors.InvalidInput`
    (``BadRequest``) a 400 with the reason, :class:`~common.secrets.SecretUnavailableError`
    (a :class:`~common.errors.TransientFailure`) a 503 with ``Retry-After``, and anything
    unexpected, a :class:`~common.errors.ConfigurationError` included, a 500 whose detail
    goes to the log only.
    """
    started = time.perf_counter()
    correlation_id = correlation_id_for(request.caller_correlation_id, invocation_id)
    log = log.bind(correlationId=correlation_id)
    headers = {"Content-Type": "application/json; charset=utf-8", "x-correlation-id": correlation_id,
               "Cache-Control": "no-store"}

    def reply(status: int, body: dict[str, Any], outcome: str, **extra_headers: str) -> Reply:
        elapsed = time.perf_counter() - started
        level = log.warning if 400 <= status < 500 else (log.error if status >= 500 else log.info)
        level("greeting.completed", status=status, outcome=outcome, durationMs=elapsed_ms(started))
        telemetry.count("app.greeting.requests", outcome=outcome, **{"http.response.status_code": status})
        dimensions: dict[str, str | int] = {"http.request.method": request.method, "http.response.status_code": status}
        telemetry.record_duration("http.server.request.duration", elapsed, **dimensions)
        return Reply(status, body, {**headers, **extra_headers})

    try:
        try:
            expected = await load_api_key()
        except SecretUnavailableError as exc:
            log.error("greeting.key_unavailable", error=str(exc))
            return reply(503, {"error": "The service is temporarily unavailable; try again later."},
                         "key_unavailable", **{"Retry-After": str(RETRY_AFTER_SECONDS)})
        if expected is None:
            cfg = settings.greeting_settings()
            log.error(
                "greeting.key_not_configured",
                reason=f"no API key: set secret '{cfg.api_key_secret_name}' in the vault at KEY_VAULT_URL, "
                f"or (locally) the app setting '{cfg.local_api_key_setting}'; refusing every request",
            )
            return reply(401, dict(UNAUTHORIZED), "key_not_configured")
        if not request.api_key or not keys_match(request.api_key, expected):
            return reply(401, dict(UNAUTHORIZED),
                         "missing_key" if not request.api_key else "wrong_key")
        try:
            name = extract_name(request.params, request.body)
        except BadRequest as exc:
            return reply(400, {"error": str(exc)}, "bad_request")
        return reply(200, {"message": f"Hello, {name}"}, "greeted")
    except Exception as exc:  # noqa: BLE001 - the caller gets a generic 500, the log gets the detail
        log.exception("greeting.failed", exc)
        return reply(500, {"error": "Internal server error"}, "error")
