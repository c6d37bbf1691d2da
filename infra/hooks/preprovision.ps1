# azd preprovision hook (Windows): the same steps as preprovision.sh. The API's Microsoft Entra ID
# app registration, created once and kept in step: app roles (infra/app-roles.json), app ID URI
# api://<client id>, v2 access tokens, a service principal; then AUTH_CLIENT_ID and AUTH_TENANT_ID
# for the Bicep (main.parameters.json).
$ErrorActionPreference = 'Stop'

if (-not $env:AZURE_ENV_NAME) { throw 'AZURE_ENV_NAME is not set: run this through azd (azd provision)' }
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
  throw "preprovision: the Azure CLI (az) is needed to register the API in Microsoft Entra ID. Install it, run 'az login', then 'azd provision'."
}

$name = "serverless-patterns-$($env:AZURE_ENV_NAME)"
$clientId = $env:AUTH_CLIENT_ID
if (-not $clientId) { $clientId = az ad app list --display-name $name --query '[0].appId' --output tsv }
if (-not $clientId) {
  Write-Host "preprovision: registering the API as '$name' in Microsoft Entra ID"
  $clientId = az ad app create --display-name $name --sign-in-audience AzureADMyOrg --query appId --output tsv
  if ($LASTEXITCODE -ne 0) { throw 'az ad app create failed' }
}

az ad app update --id $clientId --identifier-uris "api://$clientId" --app-roles '@infra/app-roles.json' --set api.requestedAccessTokenVersion=2
if ($LASTEXITCODE -ne 0) { throw 'az ad app update failed' }
az ad sp show --id $clientId --query id --output tsv *> $null
if ($LASTEXITCODE -ne 0) {
  az ad sp create --id $clientId --query id --output tsv | Out-Null
  if ($LASTEXITCODE -ne 0) { throw 'az ad sp create failed' }
}

azd env set AUTH_CLIENT_ID $clientId
azd env set AUTH_TENANT_ID (az account show --query tenantId --output tsv)
Write-Host "preprovision: the API is app registration $clientId (roles: Events.Publish, Orders.Read, Orders.Write, Orders.Admin)"
