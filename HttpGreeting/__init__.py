"""HttpGreeting: GET or POST /api/HttpGreeting, guarded by an API key kept in Key Vault."""

from __future__ import annotations

import azure.functions as func

# Imports below the bindings' types wait for the first invocation (docs/architecture.md, "Cold start").


async def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    from common import http_api, invocation

    from .greeting import ACCESS, GreetingRequest, respond

    request = GreetingRequest(method=req.method, params=dict(req.params), body=req.get_body(),
                              api_key=req.headers.get("x-api-key"),
                              caller_correlation_id=req.headers.get("x-correlation-id"),
                              authorization=req.headers.get("authorization"),
                              client_principal=req.headers.get("x-ms-client-principal"))
    async with invocation.run(context, invocation.Trigger.HTTP, "HttpGreeting",
                              attributes=invocation.http_attributes(req.method, "api/HttpGreeting")) as call:
        reply = await respond(request, invocation_id=context.invocation_id, log=call.log,
                              callers=http_api.caller_check(ACCESS))
        response = http_api.to_http_response(reply, call.span)  # the status on the span while it is open
    return response
