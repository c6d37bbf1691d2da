"""The HTTP greeting: authorize the caller, read and validate ``name``, reply in JSON.

It receives the request's parts and a way to load the expected API key, and returns a
:class:`~common.http_api.Reply`; ``__init__.main`` maps the Functions types onto these.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from common import strict_json
from common.errors import InvalidInput
from common.http_api import CallerCheck, Reply, Responder, admit, body_error
from common.logs import InvocationLog
from identity import Requirement, RouteAccess

__all__ = ["MAX_BODY_BYTES", "MAX_NAME_LENGTH", "BadRequest", "BodyTooLarge", "GreetingRequest", "extract_name", "respond",
           "validate_name"]

#: Any authenticated caller: the API key (the documents' Key Vault pattern) or a bearer token.
ACCESS = RouteAccess(Requirement(), api_key="always")


MAX_NAME_LENGTH = 100
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class GreetingRequest:
    method: str
    params: Mapping[str, str]
    body: bytes
    api_key: str | None
    caller_correlation_id: str | None = None
    authorization: str | None = None
    client_principal: str | None = None


class BadRequest(InvalidInput):
    """The request cannot be served as sent (a 400); the message tells the caller why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, reason="bad_request")


class BodyTooLarge(InvalidInput):
    """A body over :data:`MAX_BODY_BYTES`: 413, as PublishEvent answers for its own bound."""

    status = 413

    def __init__(self, detail: str) -> None:
        super().__init__(detail, reason="too_large")


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
        raise BodyTooLarge(f"Request body must be at most {MAX_BODY_BYTES} bytes.")
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
    callers: CallerCheck,
) -> Reply:
    """The reply to one request. Raises nothing: every outcome is a status
    (:meth:`common.http_api.Responder.guard`; ``BadRequest`` is a 400 with the reason)."""
    reply = Responder.for_request("greeting", method=request.method, caller_correlation_id=request.caller_correlation_id,
                                  invocation_id=invocation_id, log=log, requests_metric="app.greeting.requests")

    async def greet() -> Reply:
        from identity import Credentials

        caller = await admit(Credentials(request.authorization, request.api_key, request.client_principal), reply,
                             callers)
        if isinstance(caller, Reply):
            return caller
        name = extract_name(request.params, request.body)
        return reply(200, {"message": f"Hello, {name}"}, "greeted")

    return await reply.guard(greet)
