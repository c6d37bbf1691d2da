"""Order: GET, PUT, PATCH and DELETE /api/orders/{id}: one order, every write conditional (If-Match)."""

from __future__ import annotations

import azure.functions as func

# Imports below the bindings' types wait for the first invocation (docs/architecture.md, "Cold start").


async def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    from common import http_api, invocation, settings
    from orders.api import OrderRequest, order_item, order_services

    request = OrderRequest.of(req.method, req.url, dict(req.headers), dict(req.params), req.get_body(),
                              req.route_params.get("id"))
    async with invocation.run(context, invocation.Trigger.HTTP, "Order",
                              attributes=invocation.http_attributes(req.method, "api/orders/{id}")) as call:
        reply = await order_item(request, invocation_id=context.invocation_id, log=call.log, services=order_services,
                                 read_settings=settings.orders_settings, callers=http_api.caller_check)
        response = http_api.to_http_response(reply, call.span)  # the status on the span while it is open
    return response
