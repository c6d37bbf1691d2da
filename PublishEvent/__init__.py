"""PublishEvent: POST /api/events, publish one event to Event Grid as a CloudEvent (202 once accepted)."""

from __future__ import annotations

import azure.functions as func

# Imports below the bindings' types wait for the first invocation (docs/architecture.md, "Cold start").


async def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    from common import clients, http_api, invocation, settings

    from .publishing import ACCESS, EventRequest, respond

    request = EventRequest(body=req.get_body(), api_key=req.headers.get("x-api-key"),
                           content_type=req.headers.get("content-type"),
                           caller_correlation_id=req.headers.get("x-correlation-id"),
                           idempotency_key=req.headers.get("idempotency-key"), method=req.method,
                           authorization=req.headers.get("authorization"),
                           client_principal=req.headers.get("x-ms-client-principal"))
    async with invocation.run(context, invocation.Trigger.HTTP, "PublishEvent",
                              attributes=invocation.http_attributes(req.method, "api/events")) as call:
        reply = await respond(request, invocation_id=context.invocation_id, log=call.log,
                              publisher=clients.event_grid_publisher, read_settings=settings.event_settings,
                              callers=http_api.caller_check(ACCESS))
        response = http_api.to_http_response(reply, call.span)  # the status on the span while it is open
    return response
