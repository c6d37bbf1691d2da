"""HttpGreeting: GET or POST /api/HttpGreeting, guarded by an API key kept in Key Vault."""

from __future__ import annotations

import azure.functions as func

from common.logs import bind_invocation

from .greeting import GreetingRequest, respond


async def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    request = GreetingRequest(
        params=dict(req.params),
        body=req.get_body(),
        api_key=req.headers.get("x-api-key"),
        caller_correlation_id=req.headers.get("x-correlation-id"),
    )
    reply = await respond(request, invocation_id=context.invocation_id, log=bind_invocation(context))
    return func.HttpResponse(
        reply.body_json(), status_code=reply.status, headers=reply.headers, mimetype="application/json", charset="utf-8"
    )
