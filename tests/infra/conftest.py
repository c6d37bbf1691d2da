"""The infra tools, run as programs from their own virtual environment.

checkov, pycep-parser, actionlint and ShellCheck are installed from requirements-infra.txt
into a separate virtual environment (`make test` creates .venv-infra and passes its bin
folder as INFRA_TOOLS_BIN): checkov pins many packages and runs on Python 3.9-3.12, while
these tests run in the app's Python 3.13 environment. Without INFRA_TOOLS_BIN every test
here fails and says so; INFRA_CHECKS=skip skips them on purpose.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.infra.bicep_model import BicepFile
from tests.infra.tools import INFRA, REPO, TOOLS, WORKFLOWS, dump, run_tool


@pytest.fixture(scope="session")
def tools_bin() -> Path:
    if os.environ.get("INFRA_CHECKS", "").lower() == "skip":
        pytest.skip("INFRA_CHECKS=skip: the static checks of infra/ and .github/workflows/ are off")
    value = os.environ.get("INFRA_TOOLS_BIN")
    if not value:
        pytest.fail(
            "INFRA_TOOLS_BIN is not set. It is the bin folder of the virtual environment that holds "
            "requirements-infra.txt; `make test` creates .venv-infra and sets it. By hand: "
            "python3.12 -m venv .venv-infra && .venv-infra/bin/pip install -r requirements-infra.txt && "
            "INFRA_TOOLS_BIN=$PWD/.venv-infra/bin .venv/bin/python -m pytest tests/infra "
            "(or INFRA_CHECKS=skip to skip these checks on purpose).",
            pytrace=False,
        )
    folder = Path(value)
    missing = [tool for tool in TOOLS if not (folder / tool).is_file()]
    if missing:
        pytest.fail(
            f"INFRA_TOOLS_BIN={folder} has no {', '.join(missing)}: install requirements-infra.txt into "
            "that virtual environment (rm -rf .venv-infra && make test recreates it).",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def bicep_files(tools_bin: Path) -> dict[str, BicepFile]:
    """Every infra/*.bicep file, parsed by pycep-parser, keyed by file name (main.bicep...)."""
    paths = sorted(INFRA.glob("*.bicep"))
    assert paths, "infra/ holds no Bicep file"
    parsed = dump(tools_bin, "bicep", paths)
    return {Path(path).name: BicepFile.of(path, data) for path, data in parsed.items()}


@pytest.fixture(scope="session")
def yaml_files(tools_bin: Path) -> dict[str, object]:
    """azure.yaml and the workflows, parsed, keyed by path relative to the repository."""
    return dump(tools_bin, "yaml", [REPO / "azure.yaml", *sorted(WORKFLOWS.glob("*.yml"))])


@pytest.fixture(scope="session")
def checkov_report(tools_bin: Path) -> dict[str, object]:
    """checkov's JSON report of infra/: Bicep checks and the secrets scan."""
    result = run_tool(
        tools_bin, "checkov", "--directory", "infra", "--framework", "bicep", "secrets",
        "--skip-download", "--output", "json", "--soft-fail",
    )
    assert result.stdout.strip(), f"checkov printed no report:\n{result.stderr}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    return {item["check_type"]: item for item in reports}
