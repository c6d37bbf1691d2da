// Entry point: `azd up` / `azd provision` (parameters from main.parameters.json), or
//   az deployment sub create --location <region> --template-file infra/main.bicep \
//     --parameters environmentName=<name> location=<region> apiKey=<generated key> \
//       authClientId=<the API's app registration> authTenantId=<its tenant>
// Creates the resource group rg-<environmentName> and everything in it. See infra/README.md
// and docs/deployment.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment (the azd environment name); the resource group and every resource name derive from it.')
param environmentName string

@minLength(1)
@description('Azure region of every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of whoever deploys (azd passes the signed-in user or pipeline): may read and rotate the API key in Key Vault. Empty: nobody gets that role.')
param principalId string = ''

// No default on purpose: a generated default would replace the key, and lock every caller
// out, on each deployment that does not pass one.
@secure()
@minLength(12)
@description('The API key HttpGreeting accepts, stored in Key Vault as greeting-api-key. azd generates it on the first provision and reads the stored secret back on later ones (main.parameters.json); by hand, pass a generated value (see infra/README.md).')
param apiKey string

@description('Cosmos DB capacity mode: serverless (the default) or provisioned autoscale throughput.')
param cosmosServerless bool = true

@description('Email address that receives the alerts. Empty: alerts show in the portal only.')
param alertEmail string = ''

@description('Most instances the Flex Consumption app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory of each Flex Consumption instance (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@minLength(36)
@description('Tenant of the API\'s app registration; azd passes AUTH_TENANT_ID, which infra/hooks/preprovision.sh sets.')
param authTenantId string

@minLength(36)
@description('Client id of the API\'s app registration; azd passes AUTH_CLIENT_ID, which infra/hooks/preprovision.sh sets.')
param authClientId string

@description('App Service Authentication (Easy Auth) in front of the app (AUTH_MODE=easyauth); off: the app validates tokens itself.')
param enableEasyAuth bool = false

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'resources'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    apiKey: apiKey
    deployerPrincipalId: principalId
    cosmosServerless: cosmosServerless
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    authTenantId: authTenantId
    authClientId: authClientId
    enableEasyAuth: enableEasyAuth
  }
}

module alerts 'alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    tags: tags
    resourceToken: resourceToken
    appInsightsId: resources.outputs.appInsightsId
    serviceBusNamespaceId: resources.outputs.serviceBusNamespaceId
    queueNames: resources.outputs.queueNames
    logAnalyticsWorkspaceId: resources.outputs.logAnalyticsWorkspaceId
    storageAccountName: resources.outputs.storageAccountName
    etlPoisonQueueName: resources.outputs.etlPoisonQueueName
    blobEventsTopicName: resources.outputs.blobEventsTopicName
    eventsTopicName: resources.outputs.eventsTopicName
    alertEmail: alertEmail
  }
}

// azd stores these in .azure/<environment>/.env; hooks and the README's commands use them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = resources.outputs.functionAppName
output AZURE_FUNCTION_APP_URL string = 'https://${resources.outputs.functionAppHostName}'
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = resources.outputs.identityClientId
output AZURE_STORAGE_ACCOUNT_NAME string = resources.outputs.storageAccountName
output AZURE_BLOB_EVENTS_TOPIC_NAME string = resources.outputs.blobEventsTopicName
output AZURE_EVENTS_TOPIC_NAME string = resources.outputs.eventsTopicName
output AZURE_SERVICEBUS_NAMESPACE string = resources.outputs.serviceBusNamespaceName
output AZURE_COSMOS_ENDPOINT string = resources.outputs.cosmosEndpoint
output AZURE_KEY_VAULT_NAME string = resources.outputs.keyVaultName
output AZURE_KEY_VAULT_URL string = resources.outputs.keyVaultUri
output API_KEY_SECRET_NAME string = resources.outputs.apiKeySecretName
// Read back by `azd env refresh` on a fresh runner: the preprovision hook then updates the known
// registration instead of searching for it.
output AUTH_CLIENT_ID string = authClientId
output AUTH_TENANT_ID string = authTenantId
output APPLICATIONINSIGHTS_NAME string = resources.outputs.appInsightsName
output AZURE_LOG_ANALYTICS_WORKSPACE_NAME string = resources.outputs.logAnalyticsWorkspaceName
