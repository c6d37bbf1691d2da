"""What every HTTP function shares: the caller's API key, correlation ids and JSON replies.

Each function's logic builds a :class:`Responder`, checks the caller with :func:`admit`
(the route's :class:`CallerCheck`) and runs its work under :meth:`Responder.guard`, which
turns every error into a status (:func:`common.invocation.http_status`)::

    respond = Responder.for_request("greeting", method="GET", caller_correlation_id=cid,
                                    invocation_id=iid, log=log, requests_metric="app.greeting.requests")
    return await respond.guard(lambda: greet(request, respond, caller_check(ACCESS)))

Every reply is JSON, carries ``x-correlation-id`` and ``Cache-Control: no-store``, and is
logged and counted once with its outcome.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from common import telemetry
from common.errors import ConfigurationError, InvalidInput, TransientFailure
from common.logs import InvocationLog, describe_error, sane_correlation_id
from common.problems import PROBLEM_CONTENT_TYPE, FieldError, problem_body
from common.secrets import SecretUnavailableError, get_secret
from common.settings import ApiKeySettings, AuthSettings
from common.strict_json import JsonInputError
from common.timing import elapsed_ms

if TYPE_CHECKING:
    from identity import Credentials, Principal, RouteAccess, SigningKeys

__all__ = [
    "KEY_UNAVAILABLE_RETRY_AFTER_SECONDS",
    "KeyLoader",
    "Reply",
    "Responder",
    "UNAUTHORIZED",
    "CallerCheck",
    "admit",
    "authorize",
    "body_error",
    "correlation_id_for",
    "ApiKeyLoader",
    "caller_check",
    "keys_match",
]

#: One answer for a missing key, a wrong key and no key configured: the caller learns nothing more.
UNAUTHORIZED = {"error": "Missing or invalid API key (header 'x-api-key')."}
#: How long a caller should wait when the vault cannot be reached.
KEY_UNAVAILABLE_RETRY_AFTER_SECONDS = 30

KeyLoader = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Reply:
    status: int
    #: None: no body at all (204, 304).
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)

    def body_json(self) -> str:
        return "" if self.body is None else json.dumps(self.body, ensure_ascii=False)


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


class ApiKeyLoader:
    """Loads the expected API key from Key Vault (or, locally, the API_KEY app setting).

    The settings are read on each load, inside the request's guard, so a malformed one is a
    logged 500 rather than a failed invocation."""

    def __init__(self, read_settings: Callable[[], ApiKeySettings]) -> None:
        self.read_settings = read_settings

    async def __call__(self) -> str | None:
        cfg = self.read_settings()
        return await get_secret(cfg.api_key_secret_name, local_setting=cfg.local_api_key_setting)

    def where(self) -> str:
        """Where an operator puts the key, for the log line of a key that is not configured."""
        cfg = self.read_settings()
        return (f"set secret '{cfg.api_key_secret_name}' in the vault at KEY_VAULT_URL, "
                f"or (locally) the app setting '{cfg.local_api_key_setting}'")


#: What a caller is told when a dependency failed in a way a later request may get past.
UNAVAILABLE = {"error": "The service is temporarily unavailable; try again later."}
INTERNAL_ERROR = {"error": "Internal server error"}


class Responder:
    """Builds a function's replies: JSON headers, the correlation id, one log line and one
    count per request (``<operation>.completed``, ``requests_metric`` by outcome and status)."""

    def __init__(self, operation: str, *, method: str, correlation_id: str, log: InvocationLog,
                 requests_metric: str, problems: bool = False) -> None:
        #: Errors as RFC 9457 problem details (:mod:`common.problems`) rather than ``{"error": ...}``.
        self.problems = problems
        self.operation = operation
        self.method = method
        self.correlation_id = correlation_id
        self.log = log
        self.requests_metric = requests_metric
        self.started = time.perf_counter()

    @classmethod
    def for_request(cls, operation: str, *, method: str, caller_correlation_id: str | None, invocation_id: str,
                    log: InvocationLog, requests_metric: str, problems: bool = False) -> Responder:
        """The responder of one request, under the caller's correlation id when it is sane."""
        correlation_id = correlation_id_for(caller_correlation_id, invocation_id)
        return cls(operation, method=method, correlation_id=correlation_id, log=log.bind(correlationId=correlation_id),
                   requests_metric=requests_metric, problems=problems)

    def error(self, status: int, detail: str, outcome: str, *, slug: str | None = None,
              errors: Sequence[FieldError] = (), headers: Mapping[str, str] | None = None) -> Reply:
        """An error reply: problem details when the route uses them, else ``{"error": detail}``."""
        if not self.problems:
            return self(status, {"error": detail}, outcome, **dict(headers or {}))
        return self(status, problem_body(status, detail, slug=slug, errors=errors), outcome,
                    **{"Content-Type": f"{PROBLEM_CONTENT_TYPE}; charset=utf-8", **dict(headers or {})})

    def __call__(self, status: int, body: dict[str, Any] | None, outcome: str, **extra_headers: str) -> Reply:
        elapsed = time.perf_counter() - self.started
        level = self.log.warning if 400 <= status < 500 else (self.log.error if status >= 500 else self.log.info)
        level(f"{self.operation}.completed", status=status, outcome=outcome, durationMs=elapsed_ms(self.started))
        telemetry.count(self.requests_metric, outcome=outcome, **{"http.response.status_code": status})
        dimensions: dict[str, str | int] = {"http.request.method": self.method, "http.response.status_code": status}
        telemetry.record_duration("http.server.request.duration", elapsed, **dimensions)
        headers = {"Content-Type": "application/json; charset=utf-8", "x-correlation-id": self.correlation_id,
                   "Cache-Control": "no-store", **extra_headers}
        if body is None:
            headers.pop("Content-Type")
        return Reply(status, body, headers)

    async def guard(self, work: Callable[[], Awaitable[Reply]]) -> Reply:
        """``work()``'s reply, or the reply for the error it raised, by kind (:mod:`common.errors`):
        invalid input its 4xx with the detail, a transient failure 503 with ``Retry-After``, and a
        configuration error or anything unexpected 500, whose detail goes to the log only."""
        from common.invocation import http_status, retry_after_of

        try:
            return await work()
        except InvalidInput as exc:
            challenge = getattr(exc, "headers", None) or {}
            return self.error(http_status(exc), exc.detail, exc.reason, slug=getattr(exc, "slug", None),
                              errors=getattr(exc, "errors", ()), headers=challenge)
        except TransientFailure as exc:
            retry_after = retry_after_of(exc)
            self.log.error(f"{self.operation}.unavailable", error=describe_error(exc), retryAfterS=retry_after)
            return self.error(503, UNAVAILABLE["error"], "unavailable", headers={"Retry-After": str(retry_after)})
        except ConfigurationError as exc:
            self.log.error(f"{self.operation}.misconfigured", setting=exc.setting, error=describe_error(exc))
            return self.error(500, INTERNAL_ERROR["error"], "error")
        except Exception as exc:  # noqa: BLE001 - the caller gets a generic 500, the log gets the detail
            self.log.exception(f"{self.operation}.failed", exc)
            return self.error(500, INTERNAL_ERROR["error"], "error")


async def authorize(provided_key: str | None, respond: Responder, load_api_key: KeyLoader) -> Reply | None:
    """None when ``provided_key`` is the configured API key; else the reply that refuses the call:
    401 (no key, a wrong key, or no key configured) or 503 with ``Retry-After`` (vault unreachable)."""
    try:
        expected = await load_api_key()
    except SecretUnavailableError as exc:
        respond.log.error(f"{respond.operation}.key_unavailable", error=str(exc))
        return respond(503, dict(UNAVAILABLE), "key_unavailable",
                       **{"Retry-After": str(KEY_UNAVAILABLE_RETRY_AFTER_SECONDS)})
    if expected is None:
        where = getattr(load_api_key, "where", None)
        hint = where() if callable(where) else ("set the secret named by API_KEY_SECRET_NAME in the vault at "
                                                "KEY_VAULT_URL, or (locally) the app setting 'API_KEY'")
        respond.log.error(f"{respond.operation}.key_not_configured",
                          reason=f"no API key: {hint}; refusing every request")
        return respond(401, dict(UNAUTHORIZED), "key_not_configured")
    if not provided_key or not keys_match(provided_key, expected):
        return respond(401, dict(UNAUTHORIZED), "missing_key" if not provided_key else "wrong_key")
    return None


def to_http_response(reply: Reply, span: Any = None) -> Any:
    """``reply`` as the Functions ``HttpResponse``; its status goes on ``span`` (the invocation's)."""
    import azure.functions as func

    if span is not None:
        span.set_attribute("http.response.status_code", reply.status)

    if reply.body is None:
        return func.HttpResponse(status_code=reply.status, headers=reply.headers)
    return func.HttpResponse(reply.body_json(), status_code=reply.status, headers=reply.headers,
                             mimetype="application/json", charset="utf-8")


def _keys_for(cfg: AuthSettings) -> SigningKeys:
    from identity import signing_keys

    return signing_keys(cfg.jwks_urls)


@dataclass(frozen=True)
class CallerCheck:
    """How one HTTP route checks its caller: what it needs (:class:`identity.RouteAccess`), the auth
    settings (read inside the request's guard), the API key where the route takes it, and the
    issuer's signing keys."""

    route: RouteAccess
    read_auth: Callable[[], AuthSettings]
    load_api_key: KeyLoader | None = None
    keys: Callable[[AuthSettings], SigningKeys] = _keys_for


async def admit(credentials: Credentials, respond: Responder, check: CallerCheck) -> Principal | Reply:
    """The caller's principal, or the reply that refuses the call.

    A route that always takes the API key (HttpGreeting) checks the key when one is sent, or when
    nothing else is; every 401 of the key's carries a ``WWW-Authenticate`` challenge. With ``AUTH_MODE=apikey`` a
    route that takes the key checks only the key. Otherwise the caller is authenticated by
    ``AUTH_MODE`` (:func:`identity.authenticate`); its refusals raise and the guard answers them.
    The principal's ids join the request's log line.
    """
    from identity import Principal, Unauthenticated, authenticate
    from identity.errors import REALM

    route = check.route
    by_key = route.api_key == "always" and (
        credentials.api_key is not None or (credentials.authorization is None and credentials.client_principal is None))
    if not by_key:
        cfg = check.read_auth()
        if cfg.mode == "apikey":
            if route.api_key == "never":
                raise Unauthenticated("This route takes no API key; set AUTH_MODE to 'entra' or 'easyauth'.", error=None)
            by_key = True
    if by_key:
        if check.load_api_key is None:
            raise Unauthenticated("This route takes no API key.", error=None)
        refused = await authorize(credentials.api_key, respond, check.load_api_key)
        if refused is not None:
            if refused.status == 401:  # every 401 names how to authenticate (RFC 7235 section 3.1)
                challenge = (f'Bearer realm="{REALM}"' if route.api_key == "always"  # tokens too
                             else f'APIKey realm="{REALM}", header="x-api-key"')
                refused = replace(refused, headers={**refused.headers, "WWW-Authenticate": challenge})
            return refused
        principal = Principal(method="apikey")
    else:
        principal = await authenticate(credentials, route=route, cfg=cfg, keys=check.keys)
    respond.log = respond.log.bind(**principal.log_fields())
    return principal


def caller_check(route: RouteAccess) -> CallerCheck:
    """The caller check of a route, from the app settings (``AUTH_*`` and the API key's)."""
    from common import settings

    return CallerCheck(route, read_auth=settings.auth_settings, load_api_key=ApiKeyLoader(settings.api_key_settings))
