"""azure.yaml (Azure Developer CLI) and the CI/CD workflows, read as YAML."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.infra.tools import REPO


@pytest.fixture(scope="module")
def azure_yaml(yaml_files: dict[str, Any]) -> dict[str, Any]:
    return yaml_files["azure.yaml"]


@pytest.fixture(scope="module")
def ci(yaml_files: dict[str, Any]) -> dict[str, Any]:
    return yaml_files[".github/workflows/ci.yml"]


@pytest.fixture(scope="module")
def deploy(yaml_files: dict[str, Any]) -> dict[str, Any]:
    return yaml_files[".github/workflows/deploy.yml"]


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def step_using(workflow: dict[str, Any], action: str) -> dict[str, Any]:
    for step in steps(workflow):
        if step.get("uses", "").lower().startswith(action.lower() + "@"):
            return step
    raise AssertionError(f"no step uses {action}")


def runs(workflow: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow))


# --------------------------------------------------------------------------------------
# azure.yaml


def test_azd_deploys_the_repository_root_as_a_python_function_app(azure_yaml: dict[str, Any]) -> None:
    assert azure_yaml["services"] == {"api": {"project": ".", "language": "python", "host": "function",
                                             "remoteBuild": True}}
    assert azure_yaml["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}


def test_azd_postdeploy_hooks_exist(azure_yaml: dict[str, Any]) -> None:
    hooks = azure_yaml["hooks"]["postdeploy"]
    posix, windows = REPO / hooks["posix"]["run"], REPO / hooks["windows"]["run"]
    assert posix.is_file() and os.access(posix, os.X_OK), f"{posix} must be an executable file"
    assert windows.is_file()
    for script in (posix, windows):
        text = script.read_text(encoding="utf-8")
        assert "infra/blob-events.bicep" in text
        # The hook asks only whether the webhook key exists; the key itself never leaves Azure.
        reads = [line for line in text.splitlines() if "systemKeys.eventgrid_extension" in line]
        assert reads and all("systemKeys.eventgrid_extension != null" in line for line in reads), reads


# --------------------------------------------------------------------------------------
# ci.yml: make test on every push and pull request, with Python 3.13 and Node 20.


def test_ci_runs_on_push_and_pull_request(ci: dict[str, Any]) -> None:
    assert set(ci["on"]) == {"push", "pull_request"}


def test_ci_sets_up_python_3_13_and_node_20_and_runs_make_test(ci: dict[str, Any]) -> None:
    python_versions = str(step_using(ci, "actions/setup-python")["with"]["python-version"]).split()
    assert "3.13" in python_versions
    assert str(step_using(ci, "actions/setup-node")["with"]["node-version"]) == "20"
    assert "make test" in runs(ci)


def test_ci_can_only_read_the_repository(ci: dict[str, Any]) -> None:
    assert ci["permissions"] == {"contents": "read"}


# --------------------------------------------------------------------------------------
# deploy.yml: OpenID Connect, azd provision and azd deploy.


def test_deploy_runs_only_after_ci_passed_on_main_or_by_hand(deploy: dict[str, Any]) -> None:
    """Issue 27: a push to main used to deploy without waiting for CI."""
    assert "push" not in deploy["on"]
    assert deploy["on"]["workflow_run"] == {"workflows": ["CI"], "types": ["completed"], "branches": ["main"]}
    assert "workflow_dispatch" in deploy["on"]
    [job] = deploy["jobs"].values()
    assert job["if"] == "github.event_name == 'workflow_dispatch' || github.event.workflow_run.conclusion == 'success'"
    checkout = step_using(deploy, "actions/checkout")
    assert checkout["with"]["ref"] == "${{ github.event.workflow_run.head_sha || github.sha }}"  # the commit CI tested


def test_the_workflow_deploy_waits_for_is_the_ci_workflow(ci: dict[str, Any]) -> None:
    assert ci["name"] == "CI"


def test_deploy_signs_in_with_openid_connect_and_stores_no_secret(deploy: dict[str, Any]) -> None:
    assert deploy["permissions"]["id-token"] == "write"
    text = (REPO / ".github" / "workflows" / "deploy.yml").read_text(encoding="utf-8")
    assert "secrets." not in text, "the deployment must not read any stored secret"
    login = step_using(deploy, "azure/login")["with"]
    assert set(login) == {"client-id", "tenant-id", "subscription-id"}  # no client-secret, no creds
    assert "--federated-credential-provider github" in runs(deploy)


def test_deploy_provisions_then_deploys_with_azd(deploy: dict[str, Any]) -> None:
    commands = runs(deploy)
    assert commands.index("azd provision --no-prompt") < commands.index("azd deploy --no-prompt")
    # The outputs of the last provision, so the API key is read back, not regenerated.
    assert commands.index("azd env refresh") < commands.index("azd provision")


def test_deployments_never_run_in_parallel(deploy: dict[str, Any]) -> None:
    assert deploy["concurrency"]["cancel-in-progress"] is False
