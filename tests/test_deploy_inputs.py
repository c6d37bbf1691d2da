"""What Core Tools and the host read from this repository, checked as they read it."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import APP_ROOT


def backslashed(match: re.Match[str]) -> str:
    return "\\" + match.group()


def core_tools_ignores(funcignore: str) -> re.Pattern[str]:
    """The deny pattern Core Tools builds from .funcignore (src/Cli/func/Common/GitIgnoreParser.cs):
    a leading '/' dropped, '**' -> '(.+)', '*' -> '([^/]+)', every pattern anchored at the start of
    the path (relative, '/'-separated) and ending at a word boundary."""
    patterns = []
    for line in funcignore.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("!"):
            continue
        line = line.removeprefix("/")
        escaped = re.sub(r"[\-\[\]/{}()+?.\\^$|]", backslashed, line)
        patterns.append(escaped.replace("**", "(.+)").replace("*", "([^/]+)"))
    return re.compile("^((" + ")|(".join(sorted(patterns)) + "))\\b")


def test_funcignore_keeps_caches_and_dev_files_out_of_the_package_at_any_depth() -> None:
    ignored = core_tools_ignores((APP_ROOT / ".funcignore").read_text())
    for path in ("HttpGreeting/__pycache__/__init__.cpython-313.pyc", "common/__pycache__/settings.cpython-313.pyc",
                 "__pycache__/x.pyc", "common/stale.pyc", "tests/test_retry.py", "devhost/start.py", "bench/run.py",
                 "local.settings.json", ".venv/bin/python", "infra/main.bicep", "node_modules/azurite/package.json",
                 "pyproject.toml", "docs/architecture.md",
                 # issue 27: test caches, secrets and the Azurite files of Core Tools' templates
                 ".hypothesis/examples/x", ".env", "__blobstorage__/x", "__queuestorage__/x",
                 "__azurite_db_blob__.json", "__azurite_db_queue_extent__.json", "AzuriteConfig"):
        assert ignored.match(path), path
    for path in ("host.json", "requirements.txt", "HttpGreeting/__init__.py", "HttpGreeting/function.json",
                 "common/settings.py", "common/invocation.py", "etl/records.py", "etl/fanout.py", "retention/cleanup.py",
                 "BlobEtlWorker/__init__.py"):
        assert not ignored.match(path), path


def test_host_json_sets_no_sampling_the_host_ignores() -> None:
    """With telemetryMode OpenTelemetry the host ignores logging.applicationInsights; sampling is
    the OTEL_TRACES_SAMPLER app settings (infra/resources.bicep)."""
    host = json.loads((APP_ROOT / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
    assert "applicationInsights" not in host.get("logging", {})


def test_documented_publish_command_needs_nothing_git_ignores() -> None:
    """`func azure functionapp publish` reads the worker runtime from --python, else from
    FUNCTIONS_WORKER_RUNTIME or local.settings.json (git-ignored): the documented command passes it."""
    guide = (APP_ROOT / "docs" / "deployment.md").read_text()
    commands = re.findall(r"func azure functionapp publish [^\n`]*", guide)
    assert commands and all("--python" in command for command in commands), commands
    tracked = subprocess.run(["git", "ls-files"], cwd=APP_ROOT, capture_output=True, text=True, check=False).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    assert {"host.json", "requirements.txt", ".funcignore"} <= set(tracked)
    assert "local.settings.json" not in tracked


def test_the_runtime_the_tests_load_is_the_one_azure_runs() -> None:
    """Issue 27: pinned in the dev requirements only, Azure ran its default runtime instead. On
    Python 3.13+ Azure reads the runtime's version from requirements.txt (runtime version control)."""
    import importlib.metadata

    deployed = (APP_ROOT / "requirements.txt").read_text(encoding="utf-8")
    match = re.search(r"^azure-functions-runtime-v1==([\d.]+); python_version >= \"3.13\"$", deployed, re.MULTILINE)
    assert match, "requirements.txt must pin azure-functions-runtime-v1"
    assert importlib.metadata.version("azure-functions-runtime-v1") == match.group(1)
    dev = (APP_ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert not re.search(r"^azure-functions-runtime-v1", dev, re.MULTILINE), "one pin, in requirements.txt"


def test_git_ignores_test_caches_secrets_and_azurites_files() -> None:
    """Issue 27: none of these should reach a commit (git check-ignore answers for each)."""
    paths = [".hypothesis/examples/x", ".env", "__blobstorage__/x", "__queuestorage__/x", "__azurite_db_blob__.json",
             "AzuriteConfig", "local.settings.json", ".emulators/issuer/signing-key.pem"]
    result = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=APP_ROOT, capture_output=True, text=True,
                            check=False)
    if result.returncode == 128:
        pytest.skip(f"not a git checkout: {result.stderr.strip()[:200]}")
    assert sorted(result.stdout.split()) == sorted(paths)


def test_the_docker_compose_images_are_pinned_and_its_password_documented() -> None:
    """Issue 27: `docker compose up` stopped on MSSQL_SA_PASSWORD, which no doc named; images floated."""
    compose = (APP_ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    images = re.findall(r"^\s*image:\s*(\S+)", compose, re.MULTILINE)
    assert len(images) == 4
    for image in images:
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest", image
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag) or tag == "vnext-preview", image
    lock = json.loads((APP_ROOT / "package-lock.json").read_text(encoding="utf-8"))
    assert f"azurite:{lock['packages']['node_modules/azurite']['version']}" in compose
    assert "MSSQL_SA_PASSWORD" in (APP_ROOT / "docs" / "local-development.md").read_text(encoding="utf-8")
