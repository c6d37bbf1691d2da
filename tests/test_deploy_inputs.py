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
                 "pyproject.toml", "docs/architecture.md"):
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
