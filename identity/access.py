"""Who may call a route: the caller authenticated by ``AUTH_MODE``, then the route's requirement.

Each HTTP route declares a :class:`RouteAccess`; :func:`authenticate` returns the caller's
:class:`~identity.principal.Principal` or raises (401, 400 or 403 with its ``WWW-Authenticate``
challenge, 503 when the signing keys cannot be read)::

    PUBLISH = RouteAccess(Requirement(roles={"Events.Publish"}, scopes={"Events.Publish"}), api_key="apikey_mode")
    principal = await authenticate(Credentials.from_headers(req.headers), route=PUBLISH,
                                   read_settings=settings.auth_settings, keys=signing_keys)

- ``entra``: a bearer token (:mod:`identity.tokens`).
- ``easyauth``: App Service Authentication's ``X-MS-CLIENT-PRINCIPAL``, which the platform sets
  and refuses from outside. In every other mode that header is ignored: a forged one grants nothing.
- ``apikey``: no principal from the request; a route that takes the key checks it itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from common.settings import AuthSettings
from identity.errors import Forbidden, Unauthenticated
from identity.jwks import SigningKeys
from identity.principal import Principal, from_easyauth
from identity.tokens import bearer_token, validate_token

__all__ = ["Credentials", "Requirement", "RouteAccess", "authenticate", "authorize"]


class Requirement:
    """Any one of these app roles (``roles``) or delegated scopes (``scp``); none: any authenticated caller."""

    def __init__(self, *, roles: Iterable[str] = (), scopes: Iterable[str] = ()) -> None:
        self.roles = frozenset(roles)
        self.scopes = frozenset(scopes)

    def admits(self, principal: Principal) -> bool:
        if not self.roles and not self.scopes:
            return True
        return bool(self.roles & principal.roles or self.scopes & principal.scopes)

    def __str__(self) -> str:
        return " ".join(sorted(self.roles | self.scopes)) or "(any authenticated caller)"

    def __repr__(self) -> str:
        return f"Requirement(roles={sorted(self.roles)}, scopes={sorted(self.scopes)})"


@dataclass(frozen=True)
class RouteAccess:
    """What a route needs, and when it takes the API key instead of a principal: ``always`` (beside
    tokens), ``apikey_mode`` (only with ``AUTH_MODE=apikey``) or ``never``."""

    requirement: Requirement
    api_key: Literal["always", "apikey_mode", "never"] = "never"


@dataclass(frozen=True)
class Credentials:
    """What a request may authenticate with, read from its headers (names are case-insensitive)."""

    authorization: str | None = None
    api_key: str | None = None
    client_principal: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Credentials:
        lowered = {str(name).lower(): value for name, value in headers.items()}
        return cls(authorization=lowered.get("authorization"), api_key=lowered.get("x-api-key"),
                   client_principal=lowered.get("x-ms-client-principal"))


def authorize(principal: Principal, requirement: Requirement) -> Principal:
    """``principal`` when ``requirement`` admits it; :class:`Forbidden` (403) naming what is needed."""
    if not requirement.admits(principal):
        raise Forbidden(str(requirement))
    return principal


async def authenticate(credentials: Credentials, *, route: RouteAccess, cfg: AuthSettings,
                       keys: Callable[[AuthSettings], SigningKeys]) -> Principal:
    """The caller's principal by ``cfg.mode``, admitted by the route's requirement.

    Not for the API key: a caller of a route that takes it is checked by the key's own path
    (:func:`common.http_api.authorize`), which the caller of this function chooses first.
    """
    if cfg.mode == "apikey":
        raise Unauthenticated("This route does not take the API key; set AUTH_MODE to 'entra' or 'easyauth'.",
                              error=None)
    if cfg.mode == "easyauth":
        principal = from_easyauth(credentials.client_principal)
        if cfg.allowed_tenants is not None and (principal.tenant_id or "").lower() not in cfg.allowed_tenants:
            raise Unauthenticated("The caller is from a tenant that is not allowed.")
    else:
        token = bearer_token(credentials.authorization)
        principal = await validate_token(token, cfg=cfg, keys=keys(cfg))
    return authorize(principal, route.requirement)
