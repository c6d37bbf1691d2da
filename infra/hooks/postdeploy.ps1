# azd postdeploy hook (Windows): the same as postdeploy.sh. Subscribes BlobEtl to the
# `incoming` container's blob-created events (infra/blob-events.bicep); needs the Azure CLI.
$ErrorActionPreference = 'Stop'

foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_FUNCTION_APP_URL',
                  'AZURE_BLOB_EVENTS_TOPIC_NAME', 'AZURE_STORAGE_ACCOUNT_NAME') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        throw "postdeploy: $name is not set: run this through azd (azd deploy)."
    }
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    throw "postdeploy: the Azure CLI (az) is needed to subscribe BlobEtl to blob events; install it, run 'az login', then 'azd hooks run postdeploy'."
}

# Wake the app and wait until the host has created the eventgrid_extension key (never printed).
$attempt = 1
while ((az functionapp keys list --resource-group $env:AZURE_RESOURCE_GROUP --name $env:AZURE_FUNCTION_APP_NAME `
          --query 'systemKeys.eventgrid_extension != null' --output tsv 2>$null) -ne 'true') {
    if ($attempt -gt 30) {
        throw "postdeploy: the host of $env:AZURE_FUNCTION_APP_NAME has no eventgrid_extension key after 5 minutes; check that the code is deployed (BlobEtl/function.json has an eventGridTrigger), then 'azd hooks run postdeploy'."
    }
    Write-Host "postdeploy: waiting for the function host to start ($attempt/30)..."
    try { Invoke-WebRequest -Uri $env:AZURE_FUNCTION_APP_URL -TimeoutSec 30 -UseBasicParsing | Out-Null } catch { }
    $attempt++
    Start-Sleep -Seconds 10
}

Write-Host 'postdeploy: subscribing BlobEtl to blob-created events of the incoming container...'
az deployment group create `
  --resource-group $env:AZURE_RESOURCE_GROUP `
  --name blob-events `
  --template-file infra/blob-events.bicep `
  --parameters functionAppName=$env:AZURE_FUNCTION_APP_NAME `
               systemTopicName=$env:AZURE_BLOB_EVENTS_TOPIC_NAME `
               storageAccountName=$env:AZURE_STORAGE_ACCOUNT_NAME `
  --output none
if ($LASTEXITCODE -ne 0) { throw 'postdeploy: the blob-events deployment failed.' }
Write-Host 'postdeploy: done.'
