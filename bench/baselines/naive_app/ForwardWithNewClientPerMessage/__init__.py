import json
import logging
import os
from datetime import datetime

import azure.functions as func
from azure.cosmos import CosmosClient  # noqa: F401
from azure.identity import DefaultAzureCredential  # noqa: F401
from azure.keyvault.secrets import SecretClient  # noqa: F401
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.storage.blob import BlobServiceClient  # noqa: F401


async def main(msg: func.ServiceBusMessage) -> None:
    body = json.loads(msg.get_body().decode("utf-8"))
    logging.info(f"Processing message: {body}")
    result = {"id": body["id"], "status": "processed", "processedTimestamp": datetime.utcnow().isoformat()}
    client = ServiceBusClient.from_connection_string(os.environ["ServiceBusConnection"])
    with client:
        sender = client.get_queue_sender(os.environ["OUTPUT_QUEUE_NAME"])
        with sender:
            sender.send_messages(ServiceBusMessage(json.dumps(result)))
