"""HttpGreeting: GET or POST /api/HttpGreeting, guarded by an API key kept in Key Vault."""

from __future__ import annotations

import azure.functions as func

# Every import but the bindings' types happens on the first invocation: the runtime loads
# all four functions at start-up, and an instance that only ever runs one of them should
# not pay for the others' modules. Later invocations find them in sys.modules.


async def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    from common import telemetry
    from common.logs import bind_invocation

    from .greeting import GreetingRequest, respond

    request = GreetingRequest(
        method=req.method,
        params=dict(req.params),
        body=req.get_body(),
        api_key=req.headers.get("x-api-key"),
        caller_correlation_id=req.headers.get("x-correlation-id"),
    )
    # An internal span: the host already reports the request; a server span would count it twice.
    with telemetry.invocation_span(context, "HttpGreeting",
                                   attributes={"http.request.method": req.method, "http.route": "api/HttpGreeting"}) as span:
        reply = await respond(request, invocation_id=context.invocation_id, log=bind_invocation(context))
        span.set_attribute("http.response.status_code", reply.status)
    return func.HttpResponse(
        reply.body_json(), status_code=reply.status, headers=reply.headers, mimetype="application/json", charset="utf-8"
    )
