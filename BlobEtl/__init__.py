"""BlobEtl: a blob lands in storage (an Event Grid BlobCreated event); its records go to Cosmos DB
and a summary back to storage. Small blobs here, large ones fanned out to BlobEtlWorker."""

from __future__ import annotations

import azure.functions as func

# Imports below the bindings' types wait for the first invocation (docs/architecture.md, "Cold start").


async def main(event: func.EventGridEvent, context: func.Context) -> None:
    from common import clients, invocation, settings
    from etl import handle_blob_created, parse_blob_created

    # The Event Grid schema's EventGridEvent, or a CloudEvent if the subscription delivers that schema.
    event_type = getattr(event, "event_type", None) or getattr(event, "type", None)
    attributes = {"faas.trigger": "pubsub", "app.event.type": str(event_type), "app.event.subject": str(event.subject)}
    async with invocation.run(context, invocation.Trigger.EVENT_GRID, "BlobEtl", attributes=attributes,
                              log_fields={"eventId": event.id, "subject": event.subject, "eventType": event_type},
                              refused_event="etl.bad_event") as call:
        created = parse_blob_created(event_type, event.subject, event.get_json())
        if created is None:
            call.log.info("etl.event_ignored", detail="not a BlobCreated event")
            return
        cfg = settings.etl_settings()
        await handle_blob_created(created, cfg=cfg, log=call.log, blob_service=clients.blob_service_client("EtlStorage"),
                                  queue=lambda: clients.storage_queue(cfg.work_queue),
                                  container=clients.cosmos_container, throttle=clients.cosmos_throttle_signal())
