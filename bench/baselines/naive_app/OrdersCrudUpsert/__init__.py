import json
import logging
import os
import uuid

import azure.functions as func
from azure.cosmos import CosmosClient


def main(req: func.HttpRequest) -> func.HttpResponse:
    # connection_verify=False: the local emulator's self-signed certificate (the one change to make it run).
    client = CosmosClient.from_connection_string(os.environ["CosmosConnection"], connection_verify=False)
    container = client.get_database_client(os.environ["COSMOS_DATABASE"]).get_container_client(
        os.environ["BASELINE_ORDERS_CONTAINER"])
    order_id = req.route_params.get("id")
    if req.method == "POST":
        order = req.get_json()
        order["id"] = str(uuid.uuid4())
        order["total"] = sum(line["quantity"] * float(line["unitPrice"]) for line in order["lines"])
        container.upsert_item(order)
        logging.info(f"Created order {order['id']}")
        return func.HttpResponse(json.dumps(order), status_code=201, mimetype="application/json")
    order = container.read_item(order_id, partition_key=order_id)
    if req.method == "PATCH":
        order.update(req.get_json())
        container.upsert_item(order)
    return func.HttpResponse(json.dumps(order), status_code=200, mimetype="application/json")
