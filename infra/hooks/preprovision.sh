#!/bin/sh
# azd preprovision hook: the API's Microsoft Entra ID app registration, created once and kept
# in step on every `azd provision` / `azd up`: its app roles (infra/app-roles.json), its app ID
# URI api://<client id>, v2 access tokens, and a service principal to assign the roles on.
# Then it tells azd the client and tenant ids, which main.parameters.json passes to the Bicep
# (AUTH_TENANT_ID and AUTH_AUDIENCE of the function app). Needs the Azure CLI, signed in to
# the tenant, with the right to create app registrations (docs/identity.md, "In Azure").
set -eu

: "${AZURE_ENV_NAME:?is not set: run this through azd (azd provision)}"

if ! command -v az >/dev/null 2>&1; then
  echo "preprovision: the Azure CLI (az) is needed to register the API in Microsoft Entra ID." >&2
  echo "Install it, run 'az login', then 'azd provision'." >&2
  exit 1
fi

name="serverless-patterns-${AZURE_ENV_NAME}"
client_id="${AUTH_CLIENT_ID:-}"
if [ -z "$client_id" ]; then
  client_id=$(az ad app list --display-name "$name" --query '[0].appId' --output tsv)
fi
if [ -z "$client_id" ]; then
  echo "preprovision: registering the API as '$name' in Microsoft Entra ID"
  client_id=$(az ad app create --display-name "$name" --sign-in-audience AzureADMyOrg --query appId --output tsv)
fi

# The roles carry fixed ids, so an update changes nothing a caller was granted.
az ad app update --id "$client_id" --identifier-uris "api://$client_id" \
  --app-roles @infra/app-roles.json --set api.requestedAccessTokenVersion=2
if ! az ad sp show --id "$client_id" --query id --output tsv >/dev/null 2>&1; then
  az ad sp create --id "$client_id" --query id --output tsv >/dev/null
fi

azd env set AUTH_CLIENT_ID "$client_id"
azd env set AUTH_TENANT_ID "$(az account show --query tenantId --output tsv)"
echo "preprovision: the API is app registration $client_id (roles: Events.Publish, Orders.Read, Orders.Write, Orders.Admin)"
