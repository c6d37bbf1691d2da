#!/bin/sh
# azd postdeploy hook: subscribe BlobEtl to the `incoming` container's blob-created events
# (infra/blob-events.bicep). Runs after every `azd deploy` / `azd up`; the deployment is
# idempotent. Needs the Azure CLI, signed in to the same subscription as azd.
#
# Why after the deployment of the code: Event Grid validates the webhook when the
# subscription is created, and the webhook's key (the host's eventgrid_extension system key)
# exists only once the host has loaded BlobEtl's Event Grid trigger (eventGridTrigger).
set -eu

: "${AZURE_RESOURCE_GROUP:?is not set: run this through azd (azd deploy), or export the values of azd env get-values}"
: "${AZURE_FUNCTION_APP_NAME:?is not set}"
: "${AZURE_FUNCTION_APP_URL:?is not set}"
: "${AZURE_BLOB_EVENTS_TOPIC_NAME:?is not set}"
: "${AZURE_STORAGE_ACCOUNT_NAME:?is not set}"

if ! command -v az >/dev/null 2>&1; then
  echo "postdeploy: the Azure CLI (az) is needed to subscribe BlobEtl to blob events." >&2
  echo "Install it, run 'az login', then 'azd hooks run postdeploy'." >&2
  exit 1
fi

# Wake the app (Flex Consumption scales to zero) and wait until the host has created the key.
# The query prints only whether the key exists, never the key.
attempt=1
until [ "$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
            --query 'systemKeys.eventgrid_extension != null' --output tsv 2>/dev/null || true)" = "true" ]; do
  if [ "$attempt" -gt 30 ]; then
    echo "postdeploy: the host of $AZURE_FUNCTION_APP_NAME has no eventgrid_extension key after 5 minutes." >&2
    echo "Check that the code is deployed (BlobEtl/function.json has an eventGridTrigger), then 'azd hooks run postdeploy'." >&2
    exit 1
  fi
  echo "postdeploy: waiting for the function host to start ($attempt/30)..."
  curl --silent --output /dev/null --max-time 30 "$AZURE_FUNCTION_APP_URL" || true
  attempt=$((attempt + 1))
  sleep 10
done

echo "postdeploy: subscribing BlobEtl to blob-created events of the incoming container..."
az deployment group create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name blob-events \
  --template-file infra/blob-events.bicep \
  --parameters functionAppName="$AZURE_FUNCTION_APP_NAME" \
               systemTopicName="$AZURE_BLOB_EVENTS_TOPIC_NAME" \
               storageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" \
  --output none
echo "postdeploy: done."
