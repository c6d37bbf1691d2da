"""What every HTTP function shares: the caller's API key, correlation ids and JSON replies.

HttpGreeting and PublishEvent guard their routes the same way: the caller sends the
API key in ``x-api-key``; the expected key lives in Key Vault (read with the managed
identity, cached by :mod:`common.secrets`) or, locally, in the ``API_KEY`` app setting.
Each function's logic builds a :class:`Responder` and asks :func:`authorize` first::

    respond = Responder("greeting", method="GET", correlation_id=cid, log=log,
                        requests_metric="app.greeting.requests")
    refused = await authorize(request.api_key, respond, load_api_key)
    if refused is not None:
        return refused
    ...
    return respond(200, {"message": "Hello"}, "greeted")

Every reply is JSON, carries ``x-correlation-id`` and ``Cache-Control: no-store``, and is
logged and counted once with its outcome.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from common import settings, telemetry
from common.logs import InvocationLog, sane_correlation_id
from common.strict_json import JsonInputError
from common.secrets import SecretUnavailableError, get_secret
from common.timing import elapsed_ms

__all__ = [
    "KEY_UNAVAILABLE_RETRY_AFTER_SECONDS",
    "KeyLoader",
    "Reply",
    "Responder",
    "UNAUTHORIZED",
    "authorize",
    "body_error",
    "correlation_id_for",
    "keys_match",
    "load_configured_api_key",
]

#: One answer for a missing key, a wrong key and no key configured: the caller learns nothing more.
UNAUTHORIZED = {"error": "Missing or invalid API key (header 'x-api-key')."}
#: How long a caller should wait when the vault cannot be reached.
KEY_UNAVAILABLE_RETRY_AFTER_SECONDS = 30

KeyLoader = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def body_json(self) -> str:
        return json.dumps(self.body, ensure_ascii=False)


#: What the caller is told for each way a body breaks the strict JSON reader's rules.
_BODY_ERRORS = {
    "not_utf8": "Request body {detail}.",
    "too_deep": "Request body nests JSON too deeply: it {detail}.",
    "number_too_long": "Request body is not valid JSON: a number is too long ({detail}).",
}


def body_error(error: JsonInputError) -> str:
    """The caller's message for a body :func:`common.strict_json.loads` refused."""
    return _BODY_ERRORS.get(error.reason, "Request body {detail}.").format(detail=error.detail)


def correlation_id_for(caller_value: str | None, invocation_id: str) -> str:
    """The caller's correlation id when it is a sane token, else the invocation id."""
    return sane_correlation_id(caller_value) or invocation_id


def keys_match(provided: str, expected: str) -> bool:
    """Constant-time comparison, so timing does not reveal how much of the key matched.

    ``surrogatepass``: a header may carry half of a UTF-16 pair; it is just a wrong key.
    """
    return hmac.compare_digest(provided.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


async def load_configured_api_key() -> str | None:
    """The API key from Key Vault (or, locally, the API_KEY app setting)."""
    cfg = settings.greeting_settings()
    return await get_secret(cfg.api_key_secret_name, local_setting=cfg.local_api_key_setting)


class Responder:
    """Builds a function's replies: JSON headers, the correlation id, one log line and one
    count per request (``<operation>.completed``, ``requests_metric`` by outcome and status)."""

    def __init__(self, operation: str, *, method: str, correlation_id: str, log: InvocationLog,
                 requests_metric: str) -> None:
        self.operation = operation
        self.method = method
        self.correlation_id = correlation_id
        self.log = log
        self.requests_metric = requests_metric
        self.started = time.perf_counter()

    def __call__(self, status: int, body: dict[str, Any], outcome: str, **extra_headers: str) -> Reply:
        elapsed = time.perf_counter() - self.started
        level = self.log.warning if 400 <= status < 500 else (self.log.error if status >= 500 else self.log.info)
        level(f"{self.operation}.completed", status=status, outcome=outcome, durationMs=elapsed_ms(self.started))
        telemetry.count(self.requests_metric, outcome=outcome, **{"http.response.status_code": status})
        dimensions: dict[str, str | int] = {"http.request.method": self.method, "http.response.status_code": status}
        telemetry.record_duration("http.server.request.duration", elapsed, **dimensions)
        headers = {"Content-Type": "application/json; charset=utf-8", "x-correlation-id": self.correlation_id,
                   "Cache-Control": "no-store", **extra_headers}
        return Reply(status, body, headers)


async def authorize(provided_key: str | None, respond: Responder,
                    load_api_key: KeyLoader = load_configured_api_key) -> Reply | None:
    """None when ``provided_key`` is the configured API key; else the reply that refuses the call:
    401 (no key, a wrong key, or no key configured) or 503 with ``Retry-After`` (vault unreachable)."""
    try:
        expected = await load_api_key()
    except SecretUnavailableError as exc:
        respond.log.error(f"{respond.operation}.key_unavailable", error=str(exc))
        return respond(503, {"error": "The service is temporarily unavailable; try again later."},
                       "key_unavailable", **{"Retry-After": str(KEY_UNAVAILABLE_RETRY_AFTER_SECONDS)})
    if expected is None:
        cfg = settings.greeting_settings()
        respond.log.error(
            f"{respond.operation}.key_not_configured",
            reason=f"no API key: set secret '{cfg.api_key_secret_name}' in the vault at KEY_VAULT_URL, "
            f"or (locally) the app setting '{cfg.local_api_key_setting}'; refusing every request",
        )
        return respond(401, dict(UNAUTHORIZED), "key_not_configured")
    if not provided_key or not keys_match(provided_key, expected):
        return respond(401, dict(UNAUTHORIZED), "missing_key" if not provided_key else "wrong_key")
    return None
