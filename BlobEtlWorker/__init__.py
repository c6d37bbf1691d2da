"""BlobEtlWorker: the work queue of large blobs (ETL_WORK_QUEUE): splits a blob into segments,
and writes one segment's records to Cosmos DB; the last segment to finish writes the summary."""

from __future__ import annotations

import azure.functions as func

# Imports happen on the first invocation (see BlobEtl/__init__.py).


async def main(msg: func.QueueMessage, context: func.Context) -> None:
    from common import clients, settings, telemetry
    from common.host_config import queue_max_dequeue_count
    from common.logs import bind_invocation, masked_failures

    from BlobEtl.fanout import handle_work

    dequeue_count = msg.dequeue_count or 1
    log = bind_invocation(context, messageId=msg.id, dequeueCount=dequeue_count)
    attributes = {"faas.trigger": "pubsub", "messaging.system": "azure_storage_queue",
                  "messaging.message.id": str(msg.id), "app.queue.dequeue_count": dequeue_count}
    with masked_failures(), telemetry.invocation_span(context, "BlobEtlWorker", attributes=attributes):
        cfg = settings.etl_settings()
        await handle_work(msg.get_body(), message_id=str(msg.id), dequeue_count=dequeue_count,
                          max_dequeue_count=queue_max_dequeue_count(), cfg=cfg, log=log,
                          blob_service=clients.blob_service_client("EtlStorage"),
                          queue=lambda: clients.storage_queue(cfg.work_queue),
                          container=clients.cosmos_container, throttle=clients.cosmos_throttle_signal())
