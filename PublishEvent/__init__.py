"""PublishEvent: POST /api/events, publish one event to Event Grid as a CloudEvent (202 once accepted)."""

from __future__ import annotations

import azure.functions as func

# Every import but the bindings' types happens on the first invocation: the runtime loads
# all the functions at start-up, and an instance that only ever runs one of them should
# not pay for the others' modules. Later invocations find them in sys.modules.


async def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    from common import clients, telemetry
    from common.logs import bind_invocation

    from .publishing import EventRequest, respond

    request = EventRequest(
        body=req.get_body(),
        api_key=req.headers.get("x-api-key"),
        content_type=req.headers.get("content-type"),
        caller_correlation_id=req.headers.get("x-correlation-id"),
        idempotency_key=req.headers.get("idempotency-key"),
        method=req.method,
    )
    # An internal span: the host already reports the request; a server span would count it twice.
    with telemetry.invocation_span(context, "PublishEvent",
                                   attributes={"http.request.method": req.method, "http.route": "api/events"}) as span:
        reply = await respond(request, invocation_id=context.invocation_id, log=bind_invocation(context),
                              publisher=clients.event_grid_publisher)
        span.set_attribute("http.response.status_code", reply.status)
    return func.HttpResponse(
        reply.body_json(), status_code=reply.status, headers=reply.headers, mimetype="application/json", charset="utf-8"
    )
