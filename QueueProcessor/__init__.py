"""QueueProcessor: process a JSON event or a CloudEvent from Service Bus, store the result in
Cosmos DB and forward it."""

from __future__ import annotations

import azure.functions as func

# Every import but the bindings' types happens on the first invocation: the runtime loads
# all four functions at start-up, and an instance that only ever runs one of them should
# not pay for the others' modules. Later invocations find them in sys.modules.


async def main(msg: func.ServiceBusMessage, context: func.Context) -> None:
    from common import settings, telemetry
    from common.logs import bind_invocation, masked_failures

    from .processing import InboundMessage, process_message

    inbound = InboundMessage.from_trigger(msg)
    queues = settings.queue_settings()
    log = bind_invocation(context, correlation_id=(inbound.correlation_id or inbound.event_correlation_id()
                                                  or inbound.message_id))
    # An internal span: the host already reports the invocation as a request; a consumer span
    # would count it twice. A CloudEvent's own trace context (PublishEvent's request) is
    # continued; other producers' (message properties) are linked.
    span = telemetry.invocation_span(context, f"process {queues.input_queue}",
                                     attributes=inbound.span_attributes(queues.input_queue),
                                     links_from=inbound.upstream_traceparents(),
                                     continues=inbound.event_traceparent())
    with masked_failures(), span:
        # Raises when a write or a send fails past its retry budget: Service Bus then
        # redelivers, and dead-letters after MaxDeliveryCount.
        await process_message(inbound, queues=queues, log=log)
