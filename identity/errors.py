"""Why a caller was refused, as the error model's kinds, with the RFC 6750 challenge each one sends."""

from __future__ import annotations

from typing import Literal

from common.errors import InvalidInput, TransientFailure

__all__ = ["BadCredentials", "Forbidden", "SigningKeysUnavailable", "Unauthenticated"]

#: A fixed realm: the challenge never echoes anything the caller sent.
REALM = "serverless-patterns"


class Unauthenticated(InvalidInput):
    """401: no credentials (a bare ``Bearer`` challenge), or a token that does not validate
    (``error="invalid_token"``). The detail says which rule failed, never what the token held."""

    status = 401

    def __init__(self, detail: str, *, error: Literal["invalid_token"] | None = "invalid_token") -> None:
        super().__init__(detail, reason="unauthenticated")
        challenge = f'Bearer realm="{REALM}"'
        if error is not None:
            challenge += f', error="{error}"'
        self.headers = {"WWW-Authenticate": challenge}


class BadCredentials(InvalidInput):
    """400 ``error="invalid_request"``: credentials no token can make valid (several ``Authorization``
    values, one over the size bound, another scheme's syntax)."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail, reason="bad_credentials")
        self.headers = {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_request"'}


class Forbidden(InvalidInput):
    """403 ``error="insufficient_scope"``: the caller is known but lacks what the route needs."""

    status = 403

    def __init__(self, needed: str) -> None:
        super().__init__(f"This operation needs the app role or scope {needed}.", reason="forbidden")
        self.headers = {"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", scope="{needed}"'}


class SigningKeysUnavailable(TransientFailure):
    """The issuer's signing keys could not be read (unreachable, hung, garbage): 503, never a pass
    and never a 401."""

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
