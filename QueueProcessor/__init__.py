"""QueueProcessor: process a JSON event from Service Bus and forward the result."""

from __future__ import annotations

import azure.functions as func

from common import settings, telemetry
from common.logs import bind_invocation

from .processing import InboundMessage, process_message


async def main(msg: func.ServiceBusMessage, context: func.Context) -> None:
    inbound = InboundMessage.from_trigger(msg)
    queues = settings.queue_settings()
    log = bind_invocation(context, correlation_id=inbound.correlation_id or inbound.message_id)
    with telemetry.invocation_span(context, f"process {queues.input_queue}", kind="consumer",
                                   attributes=inbound.span_attributes(queues.input_queue),
                                   links_from=inbound.upstream_traceparents()):
        # Raises when a send fails past its retry budget: Service Bus then redelivers,
        # and dead-letters after MaxDeliveryCount.
        await process_message(inbound, queues=queues, log=log)
