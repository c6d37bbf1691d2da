"""QueueProcessor: process a JSON event or a CloudEvent from Service Bus, store the result in
Cosmos DB and forward it."""

from __future__ import annotations

import azure.functions as func

# Imports below the bindings' types wait for the first invocation (docs/architecture.md, "Cold start").


async def main(msg: func.ServiceBusMessage, context: func.Context) -> None:
    from common import clients, invocation, settings

    from .processing import InboundMessage, process_message

    inbound = InboundMessage.from_trigger(msg)
    queues = settings.queue_settings()
    # A CloudEvent's own trace context (PublishEvent's request) is continued; other producers'
    # (message properties) are linked.
    async with invocation.run(context, invocation.Trigger.SERVICE_BUS, f"process {queues.input_queue}",
                              attributes=inbound.span_attributes(queues.input_queue),
                              correlation_id=inbound.log_correlation_id(), links_from=inbound.upstream_traceparents(),
                              continues=inbound.event_traceparent()) as call:
        # Invalid input is set aside by process_message itself; a write or a send that fails past
        # its retry budget raises, so Service Bus redelivers, then dead-letters.
        await process_message(inbound, queues=queues, log=call.log, container=clients.cosmos_container(),
                              sender_for=clients.queue_sender, discard_sender=clients.discard_queue_sender)
