"""Who called: the ids of a validated token or an Easy Auth principal, and what they were granted."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from identity.errors import Unauthenticated

__all__ = ["Principal", "from_claims", "from_easyauth"]

Method = Literal["entra", "easyauth", "apikey"]
#: Easy Auth's header is a few KB at most; a larger one is not Easy Auth's.
MAX_PRINCIPAL_HEADER_BYTES = 16 * 1024

# Easy Auth passes claims through its default mapping: each id under its short or its long name.
# https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities
_CLAIM_NAMES = {
    "oid": ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier"),
    "tid": ("tid", "http://schemas.microsoft.com/identity/claims/tenantid"),
    "sub": ("sub", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"),
    "azp": ("azp", "appid"),
    "scp": ("scp", "http://schemas.microsoft.com/identity/claims/scope"),
    "roles": ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"),
}


@dataclass(frozen=True)
class Principal:
    """The caller, as ids only: never the token or the key."""

    method: Method
    object_id: str | None = None
    tenant_id: str | None = None
    subject: str | None = None
    #: The calling application: ``azp`` (v2 tokens) or ``appid`` (v1).
    client_id: str | None = None
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()

    def log_fields(self) -> dict[str, str | None]:
        return {"authMethod": self.method, "callerOid": self.object_id, "callerTid": self.tenant_id,
                "callerAppId": self.client_id}


def _text(value: Any, limit: int = 256) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _names(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(part for part in value.split(" ") if part)
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str) and item)
    return frozenset()


def from_claims(claims: Mapping[str, Any], method: Method = "entra") -> Principal:
    """The principal of a validated token's claims (``roles`` a list, ``scp`` space-separated)."""
    return Principal(method=method, object_id=_text(claims.get("oid")), tenant_id=_text(claims.get("tid")),
                     subject=_text(claims.get("sub")), client_id=_text(claims.get("azp") or claims.get("appid")),
                     roles=_names(claims.get("roles")), scopes=_names(claims.get("scp")))


def from_easyauth(header: str | None) -> Principal:
    """The principal App Service Authentication put in ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON with
    ``claims: [{typ, val}]``). Trusted only with ``AUTH_MODE=easyauth``: the platform sets the header
    and refuses it from outside; in any other mode the app never reads it."""
    if not header:
        raise Unauthenticated("No authenticated principal: App Service Authentication must be on.", error=None)
    if len(header) > MAX_PRINCIPAL_HEADER_BYTES:
        raise Unauthenticated("The client principal header is too large.")
    try:
        document = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise Unauthenticated("The client principal header is not base64 JSON.") from None
    claims = document.get("claims") if isinstance(document, dict) else None
    if not isinstance(claims, list):
        raise Unauthenticated("The client principal header has no claims.")
    if document.get("auth_typ") != "aad":
        raise Unauthenticated("The client principal is not from Microsoft Entra ID.")
    values: dict[str, list[str]] = {}
    for claim in claims:
        if isinstance(claim, dict) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str):
            values.setdefault(claim["typ"], []).append(claim["val"])
    role_type = document.get("role_typ")

    def first(name: str) -> str | None:
        for typ in _CLAIM_NAMES[name]:
            if values.get(typ):
                return values[typ][0]
        return None

    roles = [value for typ in (*_CLAIM_NAMES["roles"], role_type) if isinstance(typ, str)
             for value in values.get(typ, [])]
    scopes = first("scp")
    return Principal(method="easyauth", object_id=_text(first("oid")), tenant_id=_text(first("tid")),
                     subject=_text(first("sub")), client_id=_text(first("azp")), roles=_names(roles),
                     scopes=_names(scopes or ""))
