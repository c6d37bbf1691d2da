"""The code is typed and linted: mypy and ruff (pyproject.toml) over every function, package and test find nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import APP_ROOT


@pytest.mark.timeout(300)
def test_mypy_finds_no_type_errors() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"],
                            cwd=APP_ROOT, capture_output=True, text=True, timeout=290)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_ruff_finds_no_lint_or_import_order_errors() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=APP_ROOT, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stdout + result.stderr


def test_commit_subjects_are_at_most_72_characters() -> None:
    """The habit starts with the redesign (2026-12-04): git log --oneline stays readable."""
    result = subprocess.run(["git", "log", "--since=2026-12-04T00:00:00Z", "--format=%s"], cwd=APP_ROOT,
                            capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        pytest.skip(f"no git history here: {result.stderr.strip()[:200]}")
    long_subjects = [subject for subject in result.stdout.splitlines() if len(subject) > 72]
    assert long_subjects == []
