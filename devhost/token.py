"""Print a bearer token from the local issuer, for curl: ``python -m devhost.token --roles Events.Publish``.

The token is signed with the key ``make start``'s issuer publishes (``.emulators/issuer/``) and
carries what Entra ID's v2 access tokens carry: ``iss``, ``aud`` and ``tid`` from
local.settings.json (``AUTH_ISSUER``, ``AUTH_AUDIENCE``, ``AUTH_TENANT_ID``), ``roles`` for an
application caller or ``scp`` for a user's delegated scopes. Development only::

    TOKEN=$(.venv/bin/python -m devhost.token --roles Events.Publish)
    curl -s -X POST http://localhost:7071/api/events -H "Authorization: Bearer $TOKEN" -d '{"a": 1}'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devhost.issuer import DEFAULT_AUDIENCE, DEFAULT_PORT, DEFAULT_TENANT, LocalIssuer, default_key_file

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _local_values(path: Path) -> dict[str, str]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")).get("Values", {}))
    except FileNotFoundError:
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.token", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--roles", nargs="*", default=[], help="app roles (an application caller), e.g. Events.Publish")
    parser.add_argument("--scopes", nargs="*", default=[], help="delegated scopes (a user), e.g. Events.Publish")
    parser.add_argument("--tenant", help="the token's tid (default: AUTH_TENANT_ID of the local settings)")
    parser.add_argument("--audience", help="the token's aud (default: the first AUTH_AUDIENCE)")
    parser.add_argument("--minutes", type=int, default=60, help="lifetime (default 60)")
    parser.add_argument("--settings", type=Path, default=PROJECT_ROOT / "local.settings.json")
    parser.add_argument("--key", type=Path, default=default_key_file(PROJECT_ROOT))
    args = parser.parse_args(argv)
    if args.minutes < 1:
        parser.error("--minutes must be at least 1")
    if not args.key.exists():
        print(f"devhost.token: no signing key at {args.key}: run 'make start' first (its issuer creates it)",
              file=sys.stderr)
        return 1
    values = _local_values(args.settings)
    home = values.get("AUTH_TENANT_ID") or DEFAULT_TENANT
    tenant = args.tenant or home
    audience = args.audience or (values.get("AUTH_AUDIENCE") or DEFAULT_AUDIENCE).split(",")[0].strip()
    # The issuer's base address is what AUTH_ISSUER names before "/<tenant>/v2.0".
    configured = (values.get("AUTH_ISSUER") or "").split(",")[0].strip()
    suffix = f"/{home}/v2.0"
    base = configured[: -len(suffix)] if configured.endswith(suffix) else f"http://127.0.0.1:{DEFAULT_PORT}"
    issuer = LocalIssuer.from_key_file(args.key, base, tenant)
    print(issuer.mint(roles=args.roles, scopes=args.scopes, audience=audience, lifetime=args.minutes * 60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
