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

import re
import time
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
    if scheme.lower() != "bearer":
        raise BadCredentials("The Authorization scheme must be Bearer.")
    token = token.strip()
    if not token:
        raise Unauthenticated("Send a bearer token: 'Authorization: Bearer <token>'.", error=None)
    if not _TOKEN.fullmatch(token):
        raise Unauthenticated("The bearer token is not a JSON Web Token.")
    return token


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


async def validate_token(token: str, *, cfg: AuthSettings, keys: SigningKeys,
                         now: Callable[[], float] = time.time) -> Principal:
    """The principal of a valid token; :class:`Unauthenticated` naming the rule a token breaks,
    :class:`~identity.errors.SigningKeysUnavailable` when the keys cannot be read."""
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
            leeway=CLOCK_SKEW_SECONDS, options={"require": ["exp", "iss", "aud"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("The bearer token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise Unauthenticated("The bearer token is not valid yet.") from None
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
    issued = _number(claims, "iat")
    if issued is not None and issued > now() + CLOCK_SKEW_SECONDS:
        raise Unauthenticated("The bearer token was issued in the future.")
    tenant = claims.get("tid")
    if cfg.allowed_tenants is not None and (not isinstance(tenant, str) or tenant.lower() not in cfg.allowed_tenants):
        raise Unauthenticated("The bearer token is from a tenant that is not allowed.")
    return from_claims(claims)
