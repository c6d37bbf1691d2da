"""The HTTP greeting: authorize the caller, read and validate ``name``, reply in JSON.

Pure logic: it receives the request's parts and a way to load the expected
API key, and returns a :class:`Reply`. ``__init__.main`` maps the Functions
request and response types onto these.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from common import strict_json
from common.errors import InvalidInput
from common.http_api import (
    KeyLoader,
    Reply,
    Responder,
    authorize,
    body_error,
    correlation_id_for,
    load_configured_api_key,
)
from common.logs import InvocationLog

__all__ = ["MAX_BODY_BYTES", "MAX_NAME_LENGTH", "BadRequest", "GreetingRequest", "extract_name", "respond",
           "validate_name"]

MAX_NAME_LENGTH = 100
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class GreetingRequest:
    method: str
    params: Mapping[str, str]
    body: bytes
    api_key: str | None
    caller_correlation_id: str | None = None


class BadRequest(InvalidInput):
    """The request cannot be served as sent (a 400); the message tells the caller why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, reason="bad_request")


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
        raise BadRequest(body_error(exc)) from None
    if not isinstance(payload, dict):
        raise BadRequest("Request body must be a JSON object such as {\"name\": \"Ada\"}.")
    if "name" not in payload:
        raise BadRequest("Missing 'name': pass it in the query string (?name=...) or as a JSON body {\"name\": \"...\"}.")
    return validate_name(payload["name"])


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
    correlation_id = correlation_id_for(request.caller_correlation_id, invocation_id)
    reply = Responder("greeting", method=request.method, correlation_id=correlation_id,
                      log=log.bind(correlationId=correlation_id), requests_metric="app.greeting.requests")
    try:
        refused = await authorize(request.api_key, reply, load_api_key)
        if refused is not None:
            return refused
        try:
            name = extract_name(request.params, request.body)
        except BadRequest as exc:
            return reply(400, {"error": str(exc)}, "bad_request")
        return reply(200, {"message": f"Hello, {name}"}, "greeted")
    except Exception as exc:  # noqa: BLE001 - the caller gets a generic 500, the log gets the detail
        reply.log.exception("greeting.failed", exc)
        return reply(500, {"error": "Internal server error"}, "error")
