"""The scanners and linters, run on infra/, the hooks and .github/workflows/.

checkov scans every Bicep file (its Azure checks) and the whole folder (secrets); a finding
that does not apply is skipped in the file itself, on the resource, with its reason:
``// checkov:skip=CKV_AZURE_35: why``. actionlint checks the workflows (with ShellCheck on
their `run:` scripts), ShellCheck the postdeploy hook.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.infra.bicep_model import BicepFile
from tests.infra.tools import INFRA, REPO, WORKFLOWS, run_tool

SKIP_COMMENT = re.compile(r"//\s*checkov:skip=([A-Z0-9_]+):\s*(\S.*)")


def describe(checks: list[dict[str, object]]) -> str:
    return "\n".join(f"  {c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})" for c in checks)


def test_every_bicep_file_parses(bicep_files: dict[str, BicepFile]) -> None:
    assert set(bicep_files) == {path.name for path in INFRA.glob("*.bicep")}
    assert set(bicep_files) >= {"main.bicep", "resources.bicep", "alerts.bicep", "blob-events.bicep"}
    assert bicep_files["main.bicep"].data["globals"]["scope"]["value"] == "subscription"


def test_checkov_finds_nothing_in_infra(checkov_report: dict[str, dict]) -> None:
    bicep = checkov_report["bicep"]
    assert bicep["summary"]["parsing_errors"] == 0
    assert bicep["summary"]["resource_count"] > 30, "checkov did not read the templates"
    failed = [check for report in checkov_report.values() for check in report["results"]["failed_checks"]]
    assert not failed, "checkov findings (fix them, or skip one on its resource with the reason):\n" + describe(failed)


def test_every_checkov_skip_states_its_reason(checkov_report: dict[str, dict]) -> None:
    skipped = checkov_report["bicep"]["results"]["skipped_checks"]
    assert skipped, "expected the justified skips of infra/resources.bicep"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.strip()) > 20 and reason != "No comment provided", f"{check['check_id']}: no reason"


def test_every_checkov_skip_comment_matches_a_check_that_ran(checkov_report: dict[str, dict]) -> None:
    # A skip of a check that does not run on that resource is a stale, misleading comment.
    written = set()
    for path in INFRA.glob("*.bicep"):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = SKIP_COMMENT.search(line)
            if match:
                written.add((path.name, match.group(1)))
    applied = {(Path(c["file_path"]).name, c["check_id"]) for c in checkov_report["bicep"]["results"]["skipped_checks"]}
    assert written == applied


def test_actionlint_finds_nothing_in_the_workflows(tools_bin: Path) -> None:
    workflows = sorted(str(path.relative_to(REPO)) for path in WORKFLOWS.glob("*.yml"))
    assert {"ci.yml", "deploy.yml"} <= {Path(w).name for w in workflows}
    result = run_tool(tools_bin, "actionlint", "-no-color", *workflows)
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


def test_shellcheck_finds_nothing_in_the_postdeploy_hook(tools_bin: Path) -> None:
    result = run_tool(tools_bin, "shellcheck", "infra/hooks/postdeploy.sh")
    assert result.returncode == 0, f"shellcheck:\n{result.stdout}{result.stderr}"
