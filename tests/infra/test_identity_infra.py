"""The deployment of identity: the API's app registration (the azd preprovision hook and its app
roles), the AUTH_* settings the function app gets, and the optional Easy Auth in front of it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from identity.access import Requirement
from tests.infra.bicep_model import BicepFile, Resource, accessor, app_settings, text_of
from tests.infra.tools import REPO, run_tool

#: The roles the code checks (PublishEvent's Events.Publish; the orders API's three).
ROLES = {"Events.Publish", "Orders.Read", "Orders.Write", "Orders.Admin"}


@pytest.fixture(scope="module")
def resources(bicep_files: dict[str, BicepFile]) -> BicepFile:
    return bicep_files["resources.bicep"]


@pytest.fixture(scope="module")
def settings(resources: BicepFile) -> dict[str, object]:
    return app_settings(resources.resource("functionApp"))


def test_the_app_registration_declares_every_role_the_code_checks() -> None:
    from PublishEvent.publishing import ACCESS

    roles = json.loads((REPO / "infra" / "app-roles.json").read_text(encoding="utf-8"))
    assert {role["value"] for role in roles} == ROLES
    assert isinstance(ACCESS.requirement, Requirement) and ACCESS.requirement.roles <= ROLES
    for role in roles:
        assert role["displayName"] == role["value"] and role["isEnabled"] is True and role["description"]
        assert set(role["allowedMemberTypes"]) == {"Application", "User"}  # client apps and people
        uuid.UUID(role["id"])
    assert len({role["id"] for role in roles}) == len(roles)  # fixed, unique ids: updates keep grants


def test_azd_registers_the_api_before_provisioning_and_passes_its_ids() -> None:
    azure = (REPO / "azure.yaml").read_text(encoding="utf-8")
    assert "preprovision:" in azure and "infra/hooks/preprovision.sh" in azure and "infra/hooks/preprovision.ps1" in azure
    parameters = json.loads((REPO / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert parameters["authTenantId"]["value"] == "${AUTH_TENANT_ID}"
    assert parameters["authClientId"]["value"] == "${AUTH_CLIENT_ID}"
    assert parameters["enableEasyAuth"]["value"] == "${ENABLE_EASY_AUTH=false}"
    hook = (REPO / "infra" / "hooks" / "preprovision.sh").read_text(encoding="utf-8")
    for step in ("az ad app create", "--app-roles @infra/app-roles.json", "--identifier-uris \"api://$client_id\"",
                 "api.requestedAccessTokenVersion=2", "az ad sp create", "azd env set AUTH_CLIENT_ID",
                 "azd env set AUTH_TENANT_ID"):
        assert step in hook, step
    windows = (REPO / "infra" / "hooks" / "preprovision.ps1").read_text(encoding="utf-8")
    assert "--app-roles '@infra/app-roles.json'" in windows and "azd env set AUTH_TENANT_ID" in windows


def test_shellcheck_finds_nothing_in_the_preprovision_hook(tools_bin: Path) -> None:
    result = run_tool(tools_bin, "shellcheck", "infra/hooks/preprovision.sh")
    assert result.returncode == 0, f"shellcheck:\n{result.stdout}{result.stderr}"


def test_the_app_validates_tokens_for_the_registration(settings: dict[str, object]) -> None:
    assert "authTenantId" in text_of(settings["AUTH_TENANT_ID"])
    audience = text_of(settings["AUTH_AUDIENCE"])
    assert "api://" in audience and audience.count("authClientId") == 2  # the app ID URI and the client id
    mode = text_of(settings["AUTH_MODE"])
    assert "enableEasyAuth" in mode and "easyauth" in mode and "entra" in mode
    assert "AUTH_ISSUER" not in settings and "AUTH_JWKS_URL" not in settings  # Entra ID's, from the tenant


def test_the_registration_ids_have_no_default(bicep_files: dict[str, BicepFile]) -> None:
    for name in ("main.bicep", "resources.bicep"):
        for parameter in ("authTenantId", "authClientId"):
            assert bicep_files[name].parameters[parameter]["default"] is None, (name, parameter)
        assert bicep_files[name].parameters["enableEasyAuth"]["default"] is False, name


def easy_auth(resources: BicepFile) -> Resource:
    [found] = [r for r in resources.resources("Microsoft.Web/sites/config") if r.get("name") == "authsettingsV2"]
    return found


def test_easy_auth_is_only_deployed_when_asked_and_refuses_anonymous_callers(resources: BicepFile) -> None:
    config = easy_auth(resources)
    assert "enableEasyAuth" in text_of(config.condition)
    assert config.get("properties", "globalValidation", "requireAuthentication") is True
    assert config.get("properties", "globalValidation", "unauthenticatedClientAction") == "Return401"
    provider = config.get("properties", "identityProviders", "azureActiveDirectory")
    assert provider["enabled"] is True
    assert "authClientId" in text_of(provider["registration"]["clientId"])
    assert "/v2.0" in text_of(provider["registration"]["openIdIssuer"])
    assert "api://" in text_of(provider["validation"]["allowedAudiences"])
    assert config.get("properties", "login", "tokenStore", "enabled") is False  # no tokens kept by the platform


def test_key_vault_references_resolve_with_the_apps_identity(resources: BicepFile) -> None:
    """The API key's option as a Key Vault reference (API_KEY=@Microsoft.KeyVault(...)) needs it:
    the app has only a user-assigned identity, and references default to a system-assigned one."""
    site = resources.resource("functionApp")
    assert site.get("properties", "keyVaultReferenceIdentity") == accessor("identity", "id")


def test_a_fresh_runner_reads_the_registration_back(bicep_files: dict[str, BicepFile]) -> None:
    """`azd env refresh` turns main.bicep's outputs into azd values: the hook then updates the known
    registration (which the pipeline's principal owns) instead of searching the directory for it."""
    outputs = bicep_files["main.bicep"].outputs
    assert {"AUTH_CLIENT_ID", "AUTH_TENANT_ID"} <= set(outputs)
