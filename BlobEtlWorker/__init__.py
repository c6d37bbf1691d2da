"""BlobEtlWorker: the work queue of large blobs (ETL_WORK_QUEUE): splits a blob into segments,
and writes one segment's records to Cosmos DB; the last segment to finish writes the summary."""

from __future__ import annotations

import azure.functions as func

# Imports below the bindings' types wait for the first invocation (docs/architecture.md, "Cold start").


async def main(msg: func.QueueMessage, context: func.Context) -> None:
    from common import clients, invocation, settings
    from common.host_config import queue_max_dequeue_count
    from etl import handle_work

    dequeue_count = msg.dequeue_count or 1
    async with invocation.run(context, invocation.Trigger.STORAGE_QUEUE, "BlobEtlWorker",
                              attributes=invocation.queue_attributes(str(msg.id), dequeue_count),
                              log_fields={"messageId": msg.id, "dequeueCount": dequeue_count}) as call:
        cfg = settings.etl_settings()
        await handle_work(msg.get_body(), message_id=str(msg.id), dequeue_count=dequeue_count,
                          max_dequeue_count=queue_max_dequeue_count(), cfg=cfg, log=call.log,
                          blob_service=clients.blob_service_client("EtlStorage"),
                          queue=lambda: clients.storage_queue(cfg.work_queue),
                          container=clients.cosmos_container, throttle=clients.cosmos_throttle_signal())
