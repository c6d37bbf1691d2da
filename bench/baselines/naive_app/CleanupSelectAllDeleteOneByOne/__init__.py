import logging
import os
from datetime import datetime, timedelta

import azure.functions as func
from azure.cosmos import CosmosClient
from azure.identity import DefaultAzureCredential  # noqa: F401
from azure.keyvault.secrets import SecretClient  # noqa: F401
from azure.servicebus import ServiceBusClient  # noqa: F401
from azure.storage.blob import BlobServiceClient  # noqa: F401


async def main(mytimer: func.TimerRequest) -> None:
    if mytimer.past_due:
        logging.info("The timer is past due!")
    cosmos = CosmosClient.from_connection_string(os.environ["CosmosConnection"])
    container = cosmos.get_database_client(os.environ["COSMOS_DATABASE"]).get_container_client(
        os.environ["COSMOS_CONTAINER"])
    cutoff = (datetime.utcnow() - timedelta(days=int(os.environ.get("RETENTION_DAYS", "30")))).isoformat()
    query = f"SELECT * FROM c WHERE c.timestamp < '{cutoff}'"
    items = list(container.query_items(query=query, enable_cross_partition_query=True))
    for item in items:
        container.delete_item(item=item["id"], partition_key=item["id"])
    logging.info(f"Deleted {len(items)} old records")
