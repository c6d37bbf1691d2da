"""Who called: Microsoft Entra ID bearer tokens (or App Service Authentication's principal), and
what each route needs. docs/identity.md has the design; every HTTP function uses it through
:func:`common.http_api.admit`.

Nothing here imports PyJWT or cryptography at module top: a function pays for them on the
first token it validates.
"""

from identity.access import Credentials, Requirement, RouteAccess, authenticate, authorize
from identity.errors import BadCredentials, Forbidden, SigningKeysUnavailable, Unauthenticated
from identity.jwks import SigningKeys, signing_keys
from identity.principal import Principal, from_claims, from_easyauth
from identity.tokens import bearer_token, validate_token

__all__ = ["BadCredentials", "Credentials", "Forbidden", "Principal", "Requirement", "RouteAccess", "SigningKeys",
           "SigningKeysUnavailable", "Unauthenticated", "authenticate", "authorize", "bearer_token", "from_claims",
           "from_easyauth", "signing_keys", "validate_token"]
