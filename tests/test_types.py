"""The code is typed: mypy over the app, common/, devhost/ and bench/ (mypy.ini) finds nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import APP_ROOT


@pytest.mark.timeout(240)
def test_mypy_finds_no_type_errors() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-error-summary"],
                            cwd=APP_ROOT, capture_output=True, text=True, timeout=230)
    assert result.returncode == 0, result.stdout + result.stderr
