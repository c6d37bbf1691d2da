import json
import logging
import os
from datetime import datetime

import azure.functions as func
from azure.cosmos import CosmosClient
from azure.identity import DefaultAzureCredential  # noqa: F401
from azure.keyvault.secrets import SecretClient  # noqa: F401
from azure.servicebus import ServiceBusClient  # noqa: F401
from azure.storage.blob import BlobServiceClient


async def main(blob: func.InputStream) -> None:
    logging.info(f"Processing blob: {blob.name}, size: {blob.length} bytes")
    content = blob.read().decode("utf-8")
    records = json.loads(content)

    transformed = []
    for record in records:
        transformed.append({
            "id": record["id"],
            "processedData": record["data"].upper(),
            "timestamp": datetime.utcnow().isoformat(),
            "metadata": {"source": record["source"], "type": record["type"]},
        })

    cosmos = CosmosClient.from_connection_string(os.environ["CosmosConnection"])
    container = cosmos.get_database_client(os.environ["COSMOS_DATABASE"]).get_container_client(
        os.environ["COSMOS_CONTAINER"])
    for item in transformed:
        container.create_item(item)

    summary = {"processed": len(transformed), "timestamp": datetime.utcnow().isoformat()}
    storage = BlobServiceClient.from_connection_string(os.environ["EtlStorage"])
    summary_client = storage.get_blob_client("summaries", f"summary-{datetime.utcnow().isoformat()}.json")
    summary_client.upload_blob(json.dumps(summary))
    logging.info(f"Processed {len(transformed)} records")
