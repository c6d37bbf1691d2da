import json
import logging
import os

import azure.functions as func
from azure.cosmos import CosmosClient  # noqa: F401 - imported at top, as the guides do
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient
from azure.servicebus import ServiceBusClient  # noqa: F401
from azure.storage.blob import BlobServiceClient  # noqa: F401


async def main(req: func.HttpRequest) -> func.HttpResponse:
    logging.info("Python HTTP trigger function processed a request.")
    credential = DefaultAzureCredential()
    client = SecretClient(vault_url=os.environ["KEY_VAULT_URL"], credential=credential)
    api_key = client.get_secret("greeting-api-key").value
    if req.headers.get("x-api-key") != api_key:
        return func.HttpResponse("Unauthorized", status_code=401)

    name = req.params.get("name")
    if not name:
        try:
            req_body = req.get_json()
        except ValueError:
            pass
        else:
            name = req_body.get("name")
    if name:
        return func.HttpResponse(json.dumps({"message": f"Hello, {name}"}), mimetype="application/json")
    return func.HttpResponse("Please pass a name on the query string or in the request body", status_code=400)
