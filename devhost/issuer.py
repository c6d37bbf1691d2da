"""A local OpenID issuer: a signing key, its discovery document and JWKS on loopback, and its tokens.

It stands in for Microsoft Entra ID on a laptop and in the tests, with the same paths::

    GET {base}/{tenant}/v2.0/.well-known/openid-configuration
    GET {base}/{tenant}/discovery/v2.0/keys

``make start`` runs it (``python -m devhost.issuer``) on :data:`DEFAULT_PORT` with its key in
``.emulators/issuer/``; ``python -m devhost.token`` prints a token it signed. Development only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_AUDIENCE", "DEFAULT_PORT", "DEFAULT_TENANT", "LocalIssuer", "serve"]

DEFAULT_PORT = 7090
#: The local tenant, client id and audience that local.settings.example.json names.
DEFAULT_TENANT = "6c0ce0a5-0d7f-4c5e-9b5b-3f0c1e7a2d91"
DEFAULT_CLIENT_ID = "2b6f0c3e-8d1a-4e57-a6c2-9f4b7d1e3a58"
DEFAULT_AUDIENCE = "api://serverless-patterns-local"
#: The caller a local token names unless told otherwise: a client application.
LOCAL_CALLER_OID = "0c7d3b9e-4a2f-4e1b-8c6d-5f3a2e1b9c47"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_or_create_key(path: Path) -> Any:
    """The RSA private key in ``path`` (PEM), generated (2048 bits, mode 0600) when missing."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    return key


class LocalIssuer:
    """Issues RS256 tokens shaped as Entra ID's v2 access tokens, and publishes its key."""

    def __init__(self, key: Any, base_url: str, tenant: str = DEFAULT_TENANT) -> None:
        self.key = key
        self.base_url = base_url.rstrip("/")
        self.tenant = tenant
        public = key.public_key().public_numbers()
        self._n = _b64url(public.n.to_bytes((public.n.bit_length() + 7) // 8, "big"))
        self._e = _b64url(public.e.to_bytes((public.e.bit_length() + 7) // 8, "big"))
        self.kid = _b64url(hashlib.sha256(f"{self._n}.{self._e}".encode()).digest()[:16])

    @classmethod
    def from_key_file(cls, path: Path, base_url: str, tenant: str = DEFAULT_TENANT) -> LocalIssuer:
        return cls(load_or_create_key(path), base_url, tenant)

    def issuer_for(self, tenant: str) -> str:
        return f"{self.base_url}/{tenant}/v2.0"

    @property
    def issuer(self) -> str:
        return self.issuer_for(self.tenant)

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/{self.tenant}/discovery/v2.0/keys"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{"kty": "RSA", "use": "sig", "kid": self.kid, "n": self._n, "e": self._e}]}

    def discovery(self, tenant: str) -> dict[str, Any]:
        return {"issuer": self.issuer_for(tenant), "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
                "id_token_signing_alg_values_supported": ["RS256"], "token_endpoint": None}

    def claims(self, *, roles: Iterable[str] = (), scopes: Iterable[str] = (), audience: str = DEFAULT_AUDIENCE,
               tenant: str | None = None, lifetime: int = 3600, oid: str = LOCAL_CALLER_OID,
               client_id: str = DEFAULT_CLIENT_ID, now: float | None = None) -> dict[str, Any]:
        """The claims of a v2 access token: ``roles`` for an application caller, ``scp`` for a user's."""
        issued = int(time.time() if now is None else now)
        tid = tenant or self.tenant
        claims: dict[str, Any] = {"aud": audience, "iss": self.issuer_for(tid), "iat": issued, "nbf": issued,
                                  "exp": issued + lifetime, "tid": tid, "oid": oid, "sub": oid, "azp": client_id,
                                  "ver": "2.0", "uti": uuid.uuid4().hex}
        if roles := sorted(roles):
            claims["roles"] = roles
        if scopes := sorted(scopes):
            claims["scp"] = " ".join(scopes)
        return claims

    def sign(self, claims: Mapping[str, Any], *, headers: Mapping[str, Any] | None = None) -> str:
        import jwt

        return jwt.encode(dict(claims), self.key, algorithm="RS256", headers={"kid": self.kid, **(headers or {})})

    def mint(self, **options: Any) -> str:
        """A signed token with :meth:`claims` ``(**options)``."""
        return self.sign(self.claims(**options))

    def app(self) -> Any:
        from aiohttp import web

        async def discovery(request: web.Request) -> web.Response:
            return web.json_response(self.discovery(request.match_info["tenant"]))

        async def keys(request: web.Request) -> web.Response:
            return web.json_response(self.jwks())

        application = web.Application()
        application.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", discovery)
        application.router.add_get("/{tenant}/discovery/v2.0/keys", keys)
        application.router.add_get("/{tenant}/discovery/keys", keys)
        return application


async def serve(issuer: LocalIssuer, port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``issuer`` on loopback; returns the aiohttp runner (``await runner.cleanup()`` stops it)."""
    from aiohttp import web

    runner = web.AppRunner(issuer.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def default_key_file(root: Path) -> Path:
    return root / ".emulators" / "issuer" / "signing-key.pem"


def main(argv: list[str] | None = None) -> int:
    import asyncio
    import signal

    parser = argparse.ArgumentParser(prog="python -m devhost.issuer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--key", type=Path, default=default_key_file(Path(__file__).resolve().parent.parent))
    args = parser.parse_args(argv)
    issuer = LocalIssuer.from_key_file(args.key, f"http://127.0.0.1:{args.port}")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner = await serve(issuer, args.port)
        print(f"local issuer on {issuer.base_url} (tenant {issuer.tenant}, key {issuer.kid})", flush=True)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
