"""Paths of the repository and how the infra tests run the tools (see conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
WORKFLOWS = REPO / ".github" / "workflows"
DUMP = Path(__file__).with_name("dump.py")
#: What INFRA_TOOLS_BIN must hold (requirements-infra.txt installs them).
TOOLS = ("python", "checkov", "actionlint", "shellcheck")


def run_tool(tools: Path, tool: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run one of the tools from the repository root, with the tools' folder first on PATH."""
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(tools / tool), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def dump(tools: Path, kind: str, paths: Sequence[Path]) -> dict[str, object]:
    """Files parsed by the tools' Python (dump.py): ``kind`` is "bicep" or "yaml"."""
    relative = [str(path.relative_to(REPO)) for path in paths]
    result = run_tool(tools, "python", str(DUMP), kind, *relative)
    assert result.returncode == 0, f"parsing failed:\n{result.stderr}"
    return json.loads(result.stdout)
