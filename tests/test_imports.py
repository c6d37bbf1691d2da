"""The runtime imports every function at start-up: that must cost no Azure SDK import."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import APP_ROOT

HEAVY = ("azure.identity", "azure.keyvault", "azure.servicebus", "azure.cosmos", "azure.storage", "azure.core", "aiohttp",
         "opentelemetry", "jwt", "cryptography")
FUNCTIONS = ("HttpGreeting", "PublishEvent", "QueueProcessor", "CleanupTimer", "BlobEtl", "BlobEtlWorker")


def test_importing_every_function_imports_no_sdk_client_package() -> None:
    code = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(APP_ROOT)!r})\n"
        f"for name in {FUNCTIONS!r}:\n"
        "    importlib.import_module(name)\n"
        f"heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))\n"
        "print(json.dumps(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_http_logic_and_identity_import_no_token_library_until_a_token_arrives() -> None:
    """PyJWT and cryptography cost about 100 ms: a request with the API key never pays for them."""
    code = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(APP_ROOT)!r})\n"
        "for name in ('identity', 'HttpGreeting.greeting', 'PublishEvent.publishing', 'common.http_api'):\n"
        "    importlib.import_module(name)\n"
        f"heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))\n"
        "print(json.dumps(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
