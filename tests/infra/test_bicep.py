"""Security properties of infra/*.bicep, asserted on the files as pycep-parser reads them.

Nothing here can deploy (no Azure from this machine, no Bicep CLI), so each property the
deployment promises is pinned on the parsed templates: identity-only app settings, every
role assignment's role and scope, local authentication off everywhere, the queues' and
the Cosmos DB container's shape, and the alerts.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.bicep_model import BicepFile, Resource, accessor, app_settings, text_of, walk
from tests.infra.tools import REPO

# Built-in role definition ids (the same in every tenant).
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_QUEUE_DATA_MESSAGE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
SERVICE_BUS_DATA_RECEIVER = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"
SERVICE_BUS_DATA_SENDER = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
EVENT_GRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"
COSMOS_BUILT_IN_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"

ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"

#: Every Azure RBAC role assignment the deployment makes: symbol -> (role, scope symbol,
#: type of the scope resource, principal). Anything else is a privilege nobody asked for.
EXPECTED_ROLE_ASSIGNMENTS = {
    "storageBlobDataOwner": (STORAGE_BLOB_DATA_OWNER, "storage", "Microsoft.Storage/storageAccounts", "identity"),
    # BlobEtlWorker's work queue: sent to (BlobEtl, the split), read, deleted and released after a
    # failure (the queue trigger; Update Message needs messages/write); its poison queue, which the
    # queue extension puts messages on.
    "etlWorkQueueContributor": (STORAGE_QUEUE_DATA_CONTRIBUTOR, "etlWorkQueue",
                                "Microsoft.Storage/storageAccounts/queueServices/queues", "identity"),
    "etlPoisonQueueSender": (STORAGE_QUEUE_DATA_MESSAGE_SENDER, "etlPoisonQueue",
                             "Microsoft.Storage/storageAccounts/queueServices/queues", "identity"),
    "inputQueueReceiver": (SERVICE_BUS_DATA_RECEIVER, "inputQueue", "Microsoft.ServiceBus/namespaces/queues", "identity"),
    "outputQueueSender": (SERVICE_BUS_DATA_SENDER, "outputQueue", "Microsoft.ServiceBus/namespaces/queues", "identity"),
    "invalidQueueSender": (SERVICE_BUS_DATA_SENDER, "invalidQueue", "Microsoft.ServiceBus/namespaces/queues", "identity"),
    "keyVaultSecretsUser": (KEY_VAULT_SECRETS_USER, "keyVault", "Microsoft.KeyVault/vaults", "identity"),
    "monitoringMetricsPublisher": (
        MONITORING_METRICS_PUBLISHER, "appInsights", "Microsoft.Insights/components", "identity"),
    # Event Grid's own identity writes undeliverable blob events to their container.
    "eventDeadLetterWriter": (
        STORAGE_BLOB_DATA_CONTRIBUTOR, "eventDeadLetterContainer",
        "Microsoft.Storage/storageAccounts/blobServices/containers", "blobEventsTopic"),
    # PublishEvent publishes to its topic; the topic delivers to QueueProcessor's input queue and
    # dead-letters what it cannot deliver, as its own identity.
    "eventsTopicSender": (EVENT_GRID_DATA_SENDER, "eventsTopic", "Microsoft.EventGrid/topics", "identity"),
    "eventsTopicQueueSender": (SERVICE_BUS_DATA_SENDER, "inputQueue", "Microsoft.ServiceBus/namespaces/queues",
                               "eventsTopic"),
    "eventsTopicDeadLetterWriter": (
        STORAGE_BLOB_DATA_CONTRIBUTOR, "eventDeadLetterContainer",
        "Microsoft.Storage/storageAccounts/blobServices/containers", "eventsTopic"),
    # Whoever deploys may read and rotate the API key (only when a principal is given).
    "deployerSecretsOfficer": (KEY_VAULT_SECRETS_OFFICER, "keyVault", "Microsoft.KeyVault/vaults", "deployerPrincipalId"),
}

#: Settings that select the identity-based form of each connection.
IDENTITY_CONNECTIONS = ("AzureWebJobsStorage", "ServiceBusConnection", "CosmosConnection", "EtlStorage")

#: Text that would mean a key, a connection string or a password in a setting's value.
FORBIDDEN_IN_SETTINGS = ("accountkey", "sharedaccesskey", "sharedaccesssignature", "password", "listkeys",
                         "listconnectionstrings", "listaccountsas", "listservicesas", "sig=")


@pytest.fixture(scope="module")
def resources(bicep_files: dict[str, BicepFile]) -> BicepFile:
    return bicep_files["resources.bicep"]


@pytest.fixture(scope="module")
def function_app(resources: BicepFile) -> Resource:
    return resources.resource("functionApp")


@pytest.fixture(scope="module")
def settings(function_app: Resource) -> dict[str, object]:
    return app_settings(function_app)


def only(resources: BicepFile, type_: str) -> Resource:
    found = resources.resources(type_)
    assert len(found) == 1, f"expected one {type_}, found {[r.symbol for r in found]}"
    return found[0]


def principal_of(resource: Resource) -> str:
    """The symbol whose identity the assignment is for (identity, blobEventsTopic) or the parameter."""
    principal = resource.get("properties", "principalId")
    if isinstance(principal, str):
        return principal
    operands = principal["operator"]["operands"]
    return operands["operand_1"]


def role_id_of(resources: BicepFile, assignment: Resource) -> str:
    role_definition = assignment.get("properties", "roleDefinitionId")
    function = role_definition["function"]
    assert function["type"] == "subscription_resource_id", "roles are built-in: subscriptionResourceId(...)"
    assert function["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    return resources.resolve(function["parameters"]["resource_name_1"])


# --------------------------------------------------------------------------------------
# App settings: identity everywhere, no key anywhere.


def test_no_app_setting_holds_a_key_a_connection_string_or_a_password(settings: dict[str, object]) -> None:
    for name, value in settings.items():
        text = text_of(value).lower()
        leaked = [word for word in FORBIDDEN_IN_SETTINGS if word in text]
        assert not leaked, f"app setting {name} looks like a secret ({leaked}): {value}"


def test_no_app_setting_calls_a_list_function(settings: dict[str, object]) -> None:
    # listKeys(), listConnectionStrings(), ... return keys: as a function, as an accessor
    # (storage.listKeys()), or inside an interpolated string.
    for name, value in settings.items():
        for node in walk(value):
            if isinstance(node, dict) and "function" in node:
                assert not str(node["function"].get("type", "")).lower().startswith("list"), name
            if isinstance(node, dict) and "operator" in node:
                assert node["operator"].get("type") != "function_accessor", f"{name} calls a list*() accessor"
            if isinstance(node, str):
                assert not re.search(r"\.list\w*\(|\blist\w*\(", node), f"{name} calls a list*() function: {node}"


def test_no_connection_is_set_as_a_connection_string(settings: dict[str, object]) -> None:
    plain = [name for name in IDENTITY_CONNECTIONS if name in settings]
    assert not plain, f"these connections must use the identity-based <name>__* settings: {plain}"


@pytest.mark.parametrize("connection", IDENTITY_CONNECTIONS)
def test_each_connection_uses_the_user_assigned_identity(settings: dict[str, object], connection: str) -> None:
    assert settings[f"{connection}__credential"] == "identityCredential"
    assert settings[f"{connection}__clientId"] == settings["AZURE_CLIENT_ID"]


def test_identity_credential_is_managedidentity(resources: BicepFile) -> None:
    assert resources.resolve("identityCredential") == "managedidentity"


#: Settings whose value is read from a deployed resource: setting -> the property read.
ENDPOINT_SETTINGS = {
    "AzureWebJobsStorage__accountName": ("storage", "name"),
    "CosmosConnection__accountEndpoint": ("cosmos", "properties", "documentEndpoint"),
    "EtlStorage__blobServiceUri": ("storage", "properties", "primaryEndpoints", "blob"),
    "EtlStorage__queueServiceUri": ("storage", "properties", "primaryEndpoints", "queue"),
    "KEY_VAULT_URL": ("keyVault", "properties", "vaultUri"),
    "AZURE_CLIENT_ID": ("identity", "properties", "clientId"),
    "APPLICATIONINSIGHTS_CONNECTION_STRING": ("appInsights", "properties", "ConnectionString"),
}

#: Settings whose value is the name of a deployed resource: setting -> (resource, its name).
NAME_SETTINGS = {
    "INPUT_QUEUE_NAME": ("inputQueue", "orders-in"),
    "OUTPUT_QUEUE_NAME": ("outputQueue", "orders-out"),
    "INVALID_QUEUE_NAME": ("invalidQueue", "orders-invalid"),
    "COSMOS_DATABASE": ("cosmosDatabase", "serverless"),
    "COSMOS_CONTAINER": ("cosmosContainer", "records"),
    "ORDERS_EVENTS_CONTAINER": ("orderEventsContainer", "order-events"),
    "ORDERS_IDEMPOTENCY_CONTAINER": ("orderIdempotencyContainer", "order-idempotency"),
    "ETL_INPUT_CONTAINER": ("etlInputContainer", "incoming"),
    "ETL_SUMMARY_CONTAINER": ("etlSummaryContainer", "summaries"),
    "API_KEY_SECRET_NAME": ("apiKeySecret", "greeting-api-key"),
}


@pytest.mark.parametrize("setting", sorted(ENDPOINT_SETTINGS))
def test_endpoint_setting_is_read_from_the_deployed_resource(settings: dict[str, object], setting: str) -> None:
    assert settings[setting] == accessor(*ENDPOINT_SETTINGS[setting])


def test_service_bus_namespace_setting_is_the_host_name_of_the_namespace_endpoint(settings: dict[str, object]) -> None:
    # serviceBusEndpoint is https://<ns>.servicebus.windows.net:443/; the setting wants the host.
    value = settings["ServiceBusConnection__fullyQualifiedNamespace"]
    assert isinstance(value, dict), value
    outer = value["function"]
    inner = outer["parameters"]["original_string"]["function"]
    assert (outer["type"], outer["parameters"]["old_string"], outer["parameters"]["new_string"]) == ("replace", ":443/", "")
    assert (inner["type"], inner["parameters"]["old_string"], inner["parameters"]["new_string"]) == ("replace", "https://", "")
    assert inner["parameters"]["original_string"] == accessor("serviceBus", "properties", "serviceBusEndpoint")


@pytest.mark.parametrize("setting", sorted(NAME_SETTINGS))
def test_name_setting_is_the_name_of_the_deployed_resource(resources: BicepFile, settings: dict[str, object],
                                                           setting: str) -> None:
    symbol, name = NAME_SETTINGS[setting]
    assert settings[setting] == accessor(symbol, "name")
    assert resources.resolve(resources.resource(symbol).get("name")) == name


def test_cleanup_settings_keep_the_documented_values(settings: dict[str, object]) -> None:
    assert settings["CLEANUP_SCHEDULE"] == "0 0 2 * * *"
    assert settings["RETENTION_DAYS"] == "30"


def test_application_insights_is_reached_with_the_identity(settings: dict[str, object]) -> None:
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=${identity.properties.clientId};Authorization=AAD")
    assert settings["PYTHON_ENABLE_OPENTELEMETRY"] == "true"


def test_no_setting_that_flex_consumption_rejects(settings: dict[str, object]) -> None:
    # The runtime and its version are functionAppConfig.runtime; these settings make the
    # deployment fail or are ignored on Flex Consumption.
    # https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
    rejected = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE", "SCM_DO_BUILD_DURING_DEPLOYMENT",
                "FUNCTIONS_MAX_HTTP_CONCURRENCY", "FUNCTIONS_WORKER_PROCESS_COUNT", "ENABLE_ORYX_BUILD",
                "WEBSITE_CONTENTOVERVNET", "WEBSITE_NODE_DEFAULT_VERSION", "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
                "PYTHON_THREADPOOL_THREAD_COUNT", "API_KEY"}
    assert not rejected & set(settings)


# --------------------------------------------------------------------------------------
# The function app.


def test_function_app_runs_python_3_13_on_flex_consumption(resources: BicepFile, function_app: Resource) -> None:
    plan = resources.resource("plan")
    assert plan.get("sku") == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan.get("properties", "reserved") is True  # Linux
    assert function_app.get("kind") == "functionapp,linux"
    assert function_app.get("properties", "functionAppConfig", "runtime") == {"name": "python", "version": "3.13"}


def test_function_app_has_only_the_user_assigned_identity(function_app: Resource) -> None:
    identity = function_app.get("identity")
    assert identity["type"] == "UserAssigned"
    assert list(identity["userAssignedIdentities"]) == ["'${identity.id}'"]  # pycep keeps the key's quotes


def test_deployment_package_is_read_with_the_identity(function_app: Resource) -> None:
    storage = function_app.get("properties", "functionAppConfig", "deployment", "storage")
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert "identity" in text_of(storage["authentication"]["userAssignedIdentityResourceId"])


def test_function_app_accepts_https_only_with_tls_1_2(function_app: Resource) -> None:
    assert function_app.get("properties", "httpsOnly") is True
    site_config = function_app.get("properties", "siteConfig")
    assert site_config["minTlsVersion"] == "1.2"


#: Flex Consumption's deprecated site properties
#: (https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations).
FLEX_DEPRECATED_SITE_CONFIG = {"alwaysOn", "ftpsState", "functionAppScaleLimit", "javaVersion", "linuxFxVersion",
                               "netFrameworkVersion", "powerShellVersion", "preWarmedInstanceCount", "use32BitWorkerProcess",
                               "vnetRouteAllEnabled", "windowsFxVersion"}



def test_no_site_property_flex_consumption_deprecates(function_app: Resource) -> None:
    site_config = function_app.get("properties", "siteConfig")
    assert sorted(FLEX_DEPRECATED_SITE_CONFIG & set(site_config)) == []


def test_http_concurrency_is_set_where_flex_reads_it(function_app: Resource) -> None:
    scale = function_app.get("properties", "functionAppConfig", "scaleAndConcurrency")
    assert "httpPerInstanceConcurrency" in text_of(scale["triggers"]["http"]["perInstanceConcurrency"])


def test_host_and_worker_sample_by_the_same_fixed_percentage(settings: dict[str, object]) -> None:
    assert settings["OTEL_TRACES_SAMPLER"] == "microsoft.fixed_percentage"
    assert "tracesSampleRatio" in text_of(settings["OTEL_TRACES_SAMPLER_ARG"])


def test_publishing_with_basic_credentials_is_off(resources: BicepFile) -> None:
    policies = resources.resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert sorted(policy.get("name") for policy in policies) == ["ftp", "scm"]
    assert all(policy.get("properties", "allow") is False for policy in policies)


def test_function_app_is_tagged_for_azd(function_app: Resource) -> None:
    # azd deploys the service `api` of azure.yaml to the resource with this tag.
    tags = function_app.get("tags")["function"]
    assert tags["type"] == "union"
    assert tags["parameters"] == {"arg_1": "tags", "arg_2": {"'azd-service-name'": "api"}}


# --------------------------------------------------------------------------------------
# Role assignments.


def test_role_assignments_are_exactly_the_expected_ones(bicep_files: dict[str, BicepFile]) -> None:
    found = {(name, r.symbol) for name, file in bicep_files.items() for r in file.resources(ROLE_ASSIGNMENT)}
    assert found == {("resources.bicep", symbol) for symbol in EXPECTED_ROLE_ASSIGNMENTS}


@pytest.mark.parametrize("symbol", sorted(EXPECTED_ROLE_ASSIGNMENTS))
def test_role_assignment_has_its_role_and_the_one_resource_it_serves_as_scope(resources: BicepFile, symbol: str) -> None:
    role, scope, scope_type, principal = EXPECTED_ROLE_ASSIGNMENTS[symbol]
    assignment = resources.resource(symbol)
    assert role_id_of(resources, assignment) == role
    assert assignment.get("scope") == scope, f"{symbol} must be scoped to {scope}"
    assert resources.resource(scope).type == scope_type
    assert principal_of(assignment) == principal
    # The name is derived from scope, principal and role, so a re-deployment updates it in place.
    assert assignment.get("name")["function"]["type"] == "guid"


def test_service_bus_roles_are_scoped_to_single_queues(resources: BicepFile) -> None:
    queue_of = {r.symbol: resources.resolve(r.get("name")) for r in resources.resources("Microsoft.ServiceBus/namespaces/queues")}
    assert queue_of["inputQueue"] == "orders-in"
    assert queue_of["outputQueue"] == "orders-out"
    assert queue_of["invalidQueue"] == "orders-invalid"
    receivers = [r for r in resources.resources(ROLE_ASSIGNMENT) if role_id_of(resources, r) == SERVICE_BUS_DATA_RECEIVER]
    senders = [r for r in resources.resources(ROLE_ASSIGNMENT) if role_id_of(resources, r) == SERVICE_BUS_DATA_SENDER]
    assert [r.get("scope") for r in receivers] == ["inputQueue"]
    assert sorted((principal_of(r), r.get("scope")) for r in senders) == [
        ("eventsTopic", "inputQueue"), ("identity", "invalidQueue"), ("identity", "outputQueue")]


def test_app_identity_assignments_name_the_service_principal_type(resources: BicepFile) -> None:
    for assignment in resources.resources(ROLE_ASSIGNMENT):
        if principal_of(assignment) in ("identity", "blobEventsTopic", "eventsTopic"):
            assert assignment.get("properties", "principalType") == "ServicePrincipal", assignment.symbol


def test_deployer_role_is_only_assigned_when_a_principal_is_given(resources: BicepFile) -> None:
    condition = resources.resource("deployerSecretsOfficer").condition
    assert condition == {"operator": {"type": "not", "operands": {"bool_value": {
        "function": {"type": "empty", "parameters": {"item_to_test": "deployerPrincipalId"}}}}}}


def test_cosmos_data_role_is_the_built_in_data_contributor_on_the_database(resources: BicepFile) -> None:
    assignments = resources.resources("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")
    assert [a.symbol for a in assignments] == ["cosmosDataContributor"]
    assignment = assignments[0]
    assert assignment.get("parent") == "cosmos"
    role = resources.resolve(assignment.get("properties", "roleDefinitionId"))
    assert role == f"${{cosmos.id}}/sqlRoleDefinitions/{COSMOS_BUILT_IN_DATA_CONTRIBUTOR}"
    assert assignment.get("properties", "scope") == "${cosmos.id}/dbs/${cosmosDatabase.name}"
    assert principal_of(assignment) == "identity"


# --------------------------------------------------------------------------------------
# Local (key) authentication off, and the data stores' shape.


def test_storage_refuses_shared_keys_and_public_blobs_and_old_tls(resources: BicepFile) -> None:
    storage = only(resources, "Microsoft.Storage/storageAccounts")
    properties = storage.get("properties")
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["defaultToOAuthAuthentication"] is True


def test_storage_has_the_etl_containers_and_none_is_public(resources: BicepFile) -> None:
    containers = resources.resources("Microsoft.Storage/storageAccounts/blobServices/containers")
    names = {resources.resolve(c.get("name")) for c in containers}
    assert {"incoming", "summaries", "app-package", "eventgrid-deadletter"} == names
    assert all(c.get("properties", "publicAccess") == "None" for c in containers)


def test_service_bus_refuses_local_authentication(resources: BicepFile) -> None:
    namespace = only(resources, "Microsoft.ServiceBus/namespaces")
    assert namespace.get("properties", "disableLocalAuth") is True
    assert namespace.get("properties", "minimumTlsVersion") == "1.2"
    assert namespace.get("sku", "name") in ("Standard", "Premium"), "duplicate detection needs Standard or Premium"
    assert not resources.resources("Microsoft.ServiceBus/namespaces/authorizationRules")
    assert not resources.resources("Microsoft.ServiceBus/namespaces/queues/authorizationRules")


def test_output_and_input_queues_detect_duplicates(resources: BicepFile) -> None:
    assert resources.resource("outputQueue").get("properties", "requiresDuplicateDetection") is True
    # Event Grid sets the message id from the event id: a republished event is dropped, within a
    # window as long as Event Grid keeps retrying one event (eventTimeToLiveInMinutes, 1440).
    input_queue = resources.resource("inputQueue").get("properties")
    assert input_queue["requiresDuplicateDetection"] is True
    assert input_queue["duplicateDetectionHistoryTimeWindow"] == "P1D"
    subscription = only(resources, "Microsoft.EventGrid/topics/eventSubscriptions")
    assert subscription.get("properties", "retryPolicy", "eventTimeToLiveInMinutes") <= 24 * 60


def test_input_queue_dead_letters_after_bounded_deliveries(resources: BicepFile) -> None:
    properties = resources.resource("inputQueue").get("properties")
    assert properties["maxDeliveryCount"] == 10
    assert properties["lockDuration"] == "PT1M"  # above QUEUE_SEND_BUDGET_SECONDS (20 s)


def test_cosmos_refuses_keys_and_is_serverless_by_default(resources: BicepFile) -> None:
    cosmos = only(resources, "Microsoft.DocumentDB/databaseAccounts")
    assert cosmos.get("properties", "disableLocalAuth") is True
    assert cosmos.get("properties", "disableKeyBasedMetadataWriteAccess") is True
    capabilities = cosmos.get("properties", "capabilities")["operator"]
    assert capabilities["type"] == "conditional"
    assert capabilities["operands"]["condition"] == "cosmosServerless"
    assert capabilities["operands"]["true_value"] == [{"name": "EnableServerless"}]
    assert resources.parameters["cosmosServerless"]["default"] is True


def test_cosmos_container_is_partitioned_by_id(resources: BicepFile) -> None:
    container = resources.resource("cosmosContainer")
    assert container.get("properties", "resource", "partitionKey") == {"paths": ["/id"], "kind": "Hash"}
    assert resources.resolve(container.get("name")) == "records"
    assert resources.resolve(only(resources, "Microsoft.DocumentDB/databaseAccounts/sqlDatabases").get("name")) == "serverless"


def test_the_orders_containers_have_the_partition_keys_the_code_needs(resources: BicepFile) -> None:
    """The event store appends in one transactional batch per stream (partition key /streamId) and
    queries only streamId, kind, version and recordedAt; the key records are point reads with TTL."""
    events = resources.resource("orderEventsContainer").get("properties", "resource")
    assert events["partitionKey"] == {"paths": ["/streamId"], "kind": "Hash"}
    indexing = events["indexingPolicy"]
    assert {p["path"] for p in indexing["includedPaths"]} == {"/streamId/?", "/kind/?", "/version/?", "/recordedAt/?"}
    assert indexing["excludedPaths"] == [{"path": "/*"}]
    keys = resources.resource("orderIdempotencyContainer").get("properties", "resource")
    assert keys["partitionKey"] == {"paths": ["/id"], "kind": "Hash"}
    # pycep reads -1 as a unary minus of 1.
    assert keys["defaultTtl"] in (-1, {"operator": {"type": "minus", "operands": {"integer_value": 1}}})


def test_key_vault_uses_rbac_and_keeps_deleted_secrets(resources: BicepFile) -> None:
    vault = only(resources, "Microsoft.KeyVault/vaults")
    properties = vault.get("properties")
    assert properties["enableRbacAuthorization"] is True
    assert properties["enableSoftDelete"] is True
    assert properties["enablePurgeProtection"] is True
    assert "accessPolicies" not in properties


def test_application_insights_accepts_entra_id_only(resources: BicepFile) -> None:
    insights = only(resources, "Microsoft.Insights/components")
    assert insights.get("properties", "DisableLocalAuth") is True
    assert insights.get("properties", "WorkspaceResourceId") == {
        "operator": {"type": "property_accessor", "operands": {"operand_1": "logAnalytics", "operand_2": "id"}}}


# --------------------------------------------------------------------------------------
# The API key: generated, never a literal.


def test_api_key_secret_value_is_the_secure_parameter(resources: BicepFile) -> None:
    secret = only(resources, "Microsoft.KeyVault/vaults/secrets")
    assert secret.get("properties", "value") == "apiKey"
    decorators = [d["type"] for d in resources.parameters["apiKey"]["decorators"]]
    assert "secure" in decorators


def test_api_key_parameter_has_no_default_anywhere(bicep_files: dict[str, BicepFile]) -> None:
    # A default (even newGuid()) would rotate the key, locking callers out, on every
    # deployment that does not pass one; azd generates it once and reads it back instead.
    for name in ("main.bicep", "resources.bicep"):
        parameter = bicep_files[name].parameters["apiKey"]
        assert parameter["default"] is None, name
        assert {"type": "secure"} in parameter["decorators"], name


def test_azd_generates_the_api_key_once_and_reads_it_back() -> None:
    parameters = json.loads((REPO / "infra" / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert parameters["apiKey"]["value"] == "$(secretOrRandomPassword ${AZURE_KEY_VAULT_NAME} greeting-api-key)"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_main_outputs_the_key_vault_name_that_azd_reads_the_key_back_from(bicep_files: dict[str, BicepFile]) -> None:
    assert "AZURE_KEY_VAULT_NAME" in bicep_files["main.bicep"].outputs


# --------------------------------------------------------------------------------------
# Blob events: Event Grid source for BlobEtl on Flex Consumption.


def test_blob_events_go_to_the_event_grid_webhook_of_blob_etl(bicep_files: dict[str, BicepFile]) -> None:
    events = bicep_files["blob-events.bicep"]
    subscription = only(events, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    destination = subscription.get("properties", "destination")
    assert destination["endpointType"] == "WebHook"
    url = destination["properties"]["endpointUrl"]
    assert url.startswith("https://${functionApp.properties.defaultHostName}/runtime/webhooks/eventgrid?")
    assert "functionName=${functionName}&" in url  # the function's own name (not Host.Functions.X)
    assert url.endswith("&code=${eventGridExtensionKey}")
    assert destination["properties"]["maxEventsPerBatch"] == 1
    # The key is the host's eventgrid_extension system key, read inside the deployment: never a
    # parameter, never an output.
    key = events.variables["eventGridExtensionKey"]["operator"]["operands"]
    assert key["operand_1"]["function"]["parameters"]["func_name"] == "listKeys"
    assert key["operand_1"]["function"]["parameters"]["resource_identifier"] == "${functionApp.id}/host/default"
    assert key["operand_2"]["operator"]["operands"] == {"operand_1": "systemKeys", "operand_2": "eventgrid_extension"}
    assert "eventGridExtensionKey" not in text_of(events.outputs)
    assert not [name for name in events.parameters if "key" in name.lower()]
    assert events.parameters["functionName"]["default"] == "BlobEtl"


def test_blob_etl_is_an_event_grid_trigger_and_its_worker_a_queue_trigger_on_the_deployed_queue(
        resources: BicepFile, settings: dict[str, object]) -> None:
    blob_etl = json.loads((REPO / "BlobEtl" / "function.json").read_text(encoding="utf-8"))
    assert [b["type"] for b in blob_etl["bindings"]] == ["eventGridTrigger"]
    worker = json.loads((REPO / "BlobEtlWorker" / "function.json").read_text(encoding="utf-8"))
    [trigger] = worker["bindings"]
    assert (trigger["type"], trigger["queueName"], trigger["connection"]) == ("queueTrigger", "%ETL_WORK_QUEUE%",
                                                                             "EtlStorage")
    queues = {r.symbol for r in resources.resources("Microsoft.Storage/storageAccounts/queueServices/queues")}
    assert queues == {"etlWorkQueue", "etlPoisonQueue"}
    assert resources.variables["etlWorkQueueName"] == "etl-work"
    assert resources.resolve(resources.variables["etlPoisonQueueName"]) == "etl-work-poison"
    assert settings["ETL_WORK_QUEUE"] == accessor("etlWorkQueue", "name")
    assert "EtlStorage__queueServiceUri" in settings


def test_a_fanned_out_blobs_run_files_are_deleted_after_a_week(resources: BicepFile) -> None:
    policy = only(resources, "Microsoft.Storage/storageAccounts/managementPolicies")
    [rule] = policy.get("properties", "policy", "rules")
    assert rule["definition"]["filters"]["prefixMatch"] == ["${etlSummaryContainerName}/_runs/"]
    assert rule["definition"]["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"] == 7


def test_blob_events_are_only_blob_created_in_incoming(bicep_files: dict[str, BicepFile]) -> None:
    events = bicep_files["blob-events.bicep"]
    subscription = only(events, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    event_filter = subscription.get("properties", "filter")
    assert event_filter["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert event_filter["subjectBeginsWith"] == "/blobServices/default/containers/${inputContainerName}/"
    assert events.parameters["inputContainerName"]["default"] == "incoming"


def test_undeliverable_blob_events_are_dead_lettered_with_event_grids_identity(bicep_files: dict[str, BicepFile]) -> None:
    events = bicep_files["blob-events.bicep"]
    subscription = only(events, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    dead_letter = subscription.get("properties", "deadLetterWithResourceIdentity")
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert events.parameters["deadLetterContainerName"]["default"] == "eventgrid-deadletter"


def test_events_topic_accepts_cloud_events_with_entra_id_only(resources: BicepFile) -> None:
    topic = only(resources, "Microsoft.EventGrid/topics")
    assert topic.symbol == "eventsTopic"
    assert topic.get("properties", "disableLocalAuth") is True
    assert topic.get("properties", "inputSchema") == "CloudEventSchemaV1_0"
    assert topic.get("properties", "minimumTlsVersionAllowed") == "1.2"
    assert topic.get("identity") == {"type": "SystemAssigned"}


def test_events_are_delivered_to_the_input_queue_with_the_topics_identity(resources: BicepFile) -> None:
    subscription = only(resources, "Microsoft.EventGrid/topics/eventSubscriptions")
    assert subscription.get("parent") == "eventsTopic"
    properties = subscription.get("properties")
    assert properties["eventDeliverySchema"] == "CloudEventSchemaV1_0"
    assert "destination" not in properties, "delivery is with the identity, never with a key or a SAS"
    delivery = properties["deliveryWithResourceIdentity"]
    assert delivery["identity"] == {"type": "SystemAssigned"}
    destination = delivery["destination"]
    assert destination["endpointType"] == "ServiceBusQueue"
    assert destination["properties"]["resourceId"] == accessor("inputQueue", "id")
    mappings = {m["name"]: m for m in destination["properties"]["deliveryAttributeMappings"]}
    # The message id is the event id (the queue drops a republished event); Diagnostic-Id is
    # the event's traceparent (the Functions host continues the request's trace).
    assert mappings["MessageId"] == {"name": "MessageId", "type": "Dynamic", "properties": {"sourceField": "id"}}
    assert mappings["Diagnostic-Id"]["properties"] == {"sourceField": "traceparent"}
    assert properties["retryPolicy"] == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert dead_letter["deadLetterDestination"]["properties"]["blobContainerName"] == accessor(
        "eventDeadLetterContainer", "name")
    # Created after the roles it delivers and dead-letters with.
    assert set(subscription.get("dependsOn")) >= {"eventsTopicQueueSender", "eventsTopicDeadLetterWriter"}


def test_publish_event_settings_come_from_the_topic(settings: dict[str, object]) -> None:
    assert settings["EVENT_GRID_TOPIC_ENDPOINT"] == accessor("eventsTopic", "properties", "endpoint")
    # A Standard Service Bus message is at most 256 KB: an accepted event must fit one.
    assert int(str(settings["EVENT_MAX_BYTES"])) <= 256 * 1024 - 6 * 1024


def test_alerts_on_events_event_grid_could_not_deliver(bicep_files: dict[str, BicepFile]) -> None:
    alerts = bicep_files["alerts.bicep"]
    topic = accessor("eventsTopic", "id")
    for metric in ("DeadLetteredCount", "DroppedEventCount"):
        alert = next(a for a in alerts.resources("Microsoft.Insights/metricAlerts")
                     if a.get("properties", "scopes") == [topic]
                     and a.get("properties", "criteria", "allOf")[0]["metricName"] == metric)
        assert alert.get("properties", "criteria", "allOf")[0]["metricNamespace"] == "Microsoft.EventGrid/topics"


# --------------------------------------------------------------------------------------
# Alerts.


def metric_alert(alerts: BicepFile, metric: str) -> Resource:
    for alert in alerts.resources("Microsoft.Insights/metricAlerts"):
        criteria = alert.get("properties", "criteria", "allOf")
        if any(criterion["metricName"] == metric for criterion in criteria):
            return alert
    raise AssertionError(f"no metric alert on {metric}")


def test_alert_on_failed_function_invocations(bicep_files: dict[str, BicepFile]) -> None:
    alert = metric_alert(bicep_files["alerts.bicep"], "requests/failed")
    assert alert.get("properties", "scopes") == ["appInsightsId"]
    criterion = alert.get("properties", "criteria", "allOf")[0]
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)


def test_alert_on_service_bus_dead_letters(bicep_files: dict[str, BicepFile]) -> None:
    alert = metric_alert(bicep_files["alerts.bicep"], "DeadletteredMessages")
    assert alert.get("properties", "scopes") == ["serviceBusNamespaceId"]
    criterion = alert.get("properties", "criteria", "allOf")[0]
    assert criterion["dimensions"] == [{"name": "EntityName", "operator": "Include", "values": "queueNames"}]
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)


def test_alert_on_the_work_queues_poison_queue(bicep_files: dict[str, BicepFile], resources: BicepFile) -> None:
    alerts = only(bicep_files["alerts.bicep"], "Microsoft.Insights/scheduledQueryRules")
    query = alerts.get("properties", "criteria", "allOf")[0]["query"]
    assert "StorageQueueLogs" in query and "PutMessage" in query and "/${etlPoisonQueueName}" in query
    assert "etlPoisonQueueName" in bicep_files["alerts.bicep"].parameters
    assert "etlPoisonQueueName" in text_of(bicep_files["main.bicep"].modules["alerts"]["config"]["params"])
    # The query reads the storage account's queue logs, which a diagnostic setting sends there.
    diagnostics = only(resources, "Microsoft.Insights/diagnosticSettings")
    assert diagnostics.get("scope") == "queueService"
    assert {"category": "StorageWrite", "enabled": True} in diagnostics.get("properties", "logs")


def test_alert_on_blob_events_event_grid_could_not_deliver(bicep_files: dict[str, BicepFile]) -> None:
    alerts = bicep_files["alerts.bicep"]
    topic = {"operator": {"type": "property_accessor", "operands": {"operand_1": "blobEventsTopic", "operand_2": "id"}}}
    for metric in ("DeadLetteredCount", "DroppedEventCount"):
        alert = metric_alert(alerts, metric)
        assert alert.get("properties", "scopes") == [topic], metric
        assert alert.get("properties", "criteria", "allOf")[0]["metricNamespace"] == "Microsoft.EventGrid/systemTopics"


def test_main_deploys_the_alerts_with_the_resources_outputs(bicep_files: dict[str, BicepFile]) -> None:
    modules = bicep_files["main.bicep"].modules
    assert modules["alerts"]["detail"]["path"] == "alerts.bicep"
    assert modules["resources"]["detail"]["path"] == "resources.bicep"
    params = modules["alerts"]["config"]["params"]
    for name in ("appInsightsId", "serviceBusNamespaceId", "logAnalyticsWorkspaceId", "storageAccountName"):
        assert "resources" in text_of(params[name]), name
