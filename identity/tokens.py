"""Microsoft Entra ID bearer tokens, validated in code: RS256 against the issuer's keys, and the claims.

::

    token = bearer_token(request.headers.get("authorization"))
    principal = await validate_token(token, cfg=settings.auth_settings(), keys=signing_keys(cfg.jwks_urls))

What a token must be (the access-token reference:
https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference): signed with
RS256 (``alg: none`` and HS256 are refused before any key is used) by a key the issuer publishes;
``iss`` one of the tenant's issuers (v1 ``https://sts.windows.net/<tid>/``, v2
``https://login.microsoftonline.com/<tid>/v2.0``); ``aud`` one of ``AUTH_AUDIENCE``; ``exp``
present and not past, ``nbf`` not ahead, ``iat`` not in the future, each within
:data:`CLOCK_SKEW_SECONDS`; ``tid`` in ``AUTH_ALLOWED_TENANTS`` when that is set.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from common.settings import AuthSettings
from identity.errors import BadCredentials, Unauthenticated
from identity.jwks import SigningKeys
from identity.principal import Principal, from_claims

__all__ = ["CLOCK_SKEW_SECONDS", "MAX_AUTHORIZATION_BYTES", "bearer_token", "validate_token"]

CLOCK_SKEW_SECONDS = 120
#: An Authorization header larger than this is refused unread, whatever it carries.
MAX_AUTHORIZATION_BYTES = 16 * 1024
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def bearer_token(authorization: str | None) -> str:
    """The token of ``Authorization: Bearer <token>``.

    No header, or ``Bearer`` with no token: :class:`Unauthenticated` with a bare challenge (no
    credentials). Several values (the host joins them with commas), another scheme, or a header
    over :data:`MAX_AUTHORIZATION_BYTES`: :class:`BadCredentials`. A token that is not three
    base64url parts: :class:`Unauthenticated` (``invalid_token``).
    """
    if authorization is None or not authorization.strip():
        raise Unauthenticated("Send a bearer token: 'Authorization: Bearer <token>'.", error=None)
    if len(authorization) > MAX_AUTHORIZATION_BYTES:
        raise BadCredentials(f"The Authorization header is larger than {MAX_AUTHORIZATION_BYTES} bytes.")
    if "," in authorization:
        raise BadCredentials("Send one Authorization header with one bearer token.")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":  # another scheme is no bearer credential at all (RFC 6750 section 3.1)
        raise Unauthenticated("The Authorization scheme must be Bearer: send 'Authorization: Bearer <token>'.",
                              error=None)
    token = token.strip()
    if not token:
        raise Unauthenticated("Send a bearer token: 'Authorization: Bearer <token>'.", error=None)
    if not _TOKEN.fullmatch(token):
        raise Unauthenticated("The bearer token is not a JSON Web Token.")
    return token


class ValidatedTokens:
    """Tokens that passed every check, by digest, until they expire.

    A client sends the same token with each request until it nears expiry (an hour for Entra ID),
    and the RS256 verification is most of a warm request's cost (docs/benchmarks.md). An entry is
    used only for the same settings, before ``exp`` (with the clock skew), and while the key that
    signed it is still published: a key removed from the JWKS in an emergency rollover stops its
    tokens at the next refresh. At most :data:`MAX_ENTRIES`, oldest out first.
    """

    MAX_ENTRIES = 4096

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[AuthSettings, bytes], tuple[Principal, float, str, Any]] = OrderedDict()

    @staticmethod
    def key(cfg: AuthSettings, token: str) -> tuple[AuthSettings, bytes]:
        return cfg, hashlib.sha256(token.encode("ascii")).digest()

    def get(self, key: tuple[AuthSettings, bytes], now: float, keys: SigningKeys) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        principal, expires, kid, verified_with = entry
        if now >= expires or keys.current(kid) is not verified_with:
            del self._entries[key]
            return None
        return principal

    def put(self, key: tuple[AuthSettings, bytes], principal: Principal, expires: float, kid: str,
            verified_with: Any) -> None:
        self._entries[key] = (principal, expires, kid, verified_with)
        while len(self._entries) > self.MAX_ENTRIES:
            self._entries.popitem(last=False)


def _number(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim as a finite number (JSON's NaN or 1e400 would make every comparison pass)."""
    value = claims.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past a double's range
        return None
    return number if math.isfinite(number) else None


async def validate_token(token: str, *, cfg: AuthSettings, keys: SigningKeys,
                         now: Callable[[], float] = time.time) -> Principal:
    """The principal of a valid token; :class:`Unauthenticated` naming the rule a token breaks,
    :class:`~identity.errors.SigningKeysUnavailable` when the keys cannot be read."""
    if keys.validated is None:
        keys.validated = ValidatedTokens()
    cache: ValidatedTokens = keys.validated
    cache_key = cache.key(cfg, token)
    known = cache.get(cache_key, now(), keys)
    if known is not None:
        return known

    import jwt

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthenticated("The bearer token's header cannot be read.") from None
    if header.get("alg") != "RS256":
        raise Unauthenticated("The bearer token must be signed with RS256.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 256:
        raise Unauthenticated("The bearer token names no signing key (kid).")
    key = await keys.key_for(kid)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key=key, algorithms=["RS256"], audience=list(cfg.audiences), issuer=list(cfg.issuers),
            # The times are checked below, against the caller's clock (the same one the cache uses).
            options={"require": ["exp", "iss", "aud"], "verify_exp": False, "verify_nbf": False, "verify_iat": False})
    except jwt.InvalidAudienceError:
        raise Unauthenticated("The bearer token is for another audience.") from None
    except jwt.InvalidIssuerError:
        raise Unauthenticated("The bearer token is from another issuer.") from None
    except jwt.InvalidSignatureError:
        raise Unauthenticated("The bearer token's signature does not verify.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthenticated(f"The bearer token has no '{exc.claim}' claim.") from None
    except jwt.PyJWTError:
        raise Unauthenticated("The bearer token is not valid.") from None
    moment = now()
    times = {name: _number(claims, name) for name in ("exp", "nbf", "iat")}
    for name, value in times.items():
        if value is None and name in claims:
            raise Unauthenticated(f"The bearer token's '{name}' is not a number.")
    expires = times["exp"]
    if expires is None or moment >= expires + CLOCK_SKEW_SECONDS:
        raise Unauthenticated("The bearer token has expired.")
    if times["nbf"] is not None and times["nbf"] > moment + CLOCK_SKEW_SECONDS:
        raise Unauthenticated("The bearer token is not valid yet.")
    if times["iat"] is not None and times["iat"] > moment + CLOCK_SKEW_SECONDS:
        raise Unauthenticated("The bearer token was issued in the future.")
    tenant = claims.get("tid")
    if cfg.allowed_tenants is not None and (not isinstance(tenant, str) or tenant.lower() not in cfg.allowed_tenants):
        raise Unauthenticated("The bearer token is from a tenant that is not allowed.")
    if not isinstance(claims.get("azp") or claims.get("appid"), str):
        # Access tokens name the calling application (azp in v2, appid in v1); an ID token, issued
        # to the same client id as its audience, does not, and is no credential for the API.
        raise Unauthenticated("The bearer token is not an access token (it names no calling application).")
    principal = from_claims(claims)
    cache.put(cache_key, principal, expires + CLOCK_SKEW_SECONDS, kid, key)
    return principal
