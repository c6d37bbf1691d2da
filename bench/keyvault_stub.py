"""A local HTTPS stand-in for Key Vault's secrets REST API, for benchmarks only.

Speaks what ``SecretClient.get_secret`` needs: ``GET /secrets/{name}[/{version}]``
answers 401 with a bearer challenge when no token is sent (as the service does on a
client's first request), then 200 with the secret bundle. ``GET /stats`` counts requests.
With ``--identity-port``, it also answers on plain HTTP as App Service's managed identity
endpoint (``IDENTITY_ENDPOINT``, header ``X-IDENTITY-HEADER``), so both apps sign in as they
would in Azure, with the managed identity credential.

    python -m bench.keyvault_stub --port 8443 --cert cert.pem --key key.pem --secret greeting-api-key=VALUE \
        [--identity-port 8081]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ssl
from pathlib import Path

TENANT = "00000000-0000-0000-0000-000000000000"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "kv-cert.pem", folder / "kv-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def build_app(secrets: dict[str, str]):  # noqa: ANN201
    from aiohttp import web

    stats = {"requests": 0, "challenges": 0}

    async def get_secret(request: web.Request) -> web.Response:
        stats["requests"] += 1
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            stats["challenges"] += 1
            return web.json_response(
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                status=401,
                headers={"WWW-Authenticate": f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                                             'resource="https://vault.azure.net"'})
        name = request.match_info["name"]
        if name not in secrets:
            return web.json_response({"error": {"code": "SecretNotFound",
                                                "message": f"A secret with (name/id) {name} was not found in this key vault."}},
                                     status=404)
        base = f"https://{request.host}/secrets/{name}"
        return web.json_response({
            "value": secrets[name], "id": f"{base}/0123456789abcdef0123456789abcdef",
            "attributes": {"enabled": True, "created": 1764201600, "updated": 1764201600,
                           "recoveryLevel": "Recoverable+Purgeable"},
            "tags": {}})

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application()
    app.router.add_get("/secrets/{name}", get_secret)
    app.router.add_get("/secrets/{name}/", get_secret)
    app.router.add_get("/secrets/{name}/{version}", get_secret)
    app.router.add_get("/stats", get_stats)
    return app


IDENTITY_HEADER = "bench-identity-header"


def build_identity_app():  # noqa: ANN201
    """App Service's token endpoint (api-version 2019-08-01), as ManagedIdentityCredential calls it."""
    import time

    from aiohttp import web

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return web.json_response({"error": "missing X-IDENTITY-HEADER"}, status=400)
        return web.json_response({"access_token": "bench-static-token", "expires_on": str(int(time.time()) + 3600),
                                  "resource": request.query.get("resource", ""), "token_type": "Bearer",
                                  "client_id": "00000000-0000-0000-0000-000000000001"})

    app = web.Application()
    app.router.add_get("/msi/token", token)
    return app


def main() -> None:
    from aiohttp import web

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--secret", action="append", default=[], help="name=value")
    parser.add_argument("--identity-port", type=int, default=0)
    args = parser.parse_args()
    secrets = dict(item.split("=", 1) for item in args.secret)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)

    async def serve() -> None:
        runners = []
        for app, port, ssl_context in [(build_app(secrets), args.port, context),
                                       (build_identity_app(), args.identity_port, None)]:
            if not port:
                continue
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
            runners.append(runner)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
