"""BlobEtl: a blob lands in storage (an Event Grid BlobCreated event); its records go to Cosmos DB
and a summary back to storage. Small blobs here, large ones fanned out to BlobEtlWorker."""

from __future__ import annotations

import azure.functions as func

# Every import but the bindings' types happens on the first invocation: the runtime loads
# all the functions at start-up, and an instance that only ever runs one of them should
# not pay for the others' modules. Later invocations find them in sys.modules.


async def main(event: func.EventGridEvent, context: func.Context) -> None:
    from common import clients, settings, telemetry
    from common.errors import InvalidInput
    from common.logs import bind_invocation, masked_failures

    from .blob_events import handle_blob_created, parse_blob_created

    # The Event Grid schema's EventGridEvent, or a CloudEvent if the subscription delivers that schema.
    event_type = getattr(event, "event_type", None) or getattr(event, "type", None)
    log = bind_invocation(context, eventId=event.id, subject=event.subject)
    attributes = {"faas.trigger": "pubsub", "app.event.type": str(event_type), "app.event.subject": str(event.subject)}
    with masked_failures(), telemetry.invocation_span(context, "BlobEtl", attributes=attributes):
        try:
            created = parse_blob_created(event_type, event.subject, event.get_json())
        except InvalidInput as exc:
            # No delivery of this event can succeed: complete (Event Grid would retry it for a day).
            log.error("etl.bad_event", eventType=event_type, reason=exc.reason, detail=str(exc))
            return
        if created is None:
            log.info("etl.event_ignored", eventType=event_type, detail="not a BlobCreated event")
            return
        cfg = settings.etl_settings()
        # A transient failure raises: the webhook answers 500 and Event Grid delivers the event again.
        await handle_blob_created(created, cfg=cfg, log=log, blob_service=clients.blob_service_client("EtlStorage"),
                                  queue=lambda: clients.storage_queue(cfg.work_queue))
