"""BlobEtl: a JSON or JSON Lines blob lands in storage; its records go to Cosmos DB, a summary back to storage."""

from __future__ import annotations

import azure.functions as func

# Every import but the bindings' types happens on the first invocation: the runtime loads
# all four functions at start-up, and an instance that only ever runs one of them should
# not pay for the others' modules. Later invocations find them in sys.modules.


async def main(blob: func.InputStream, context: func.Context) -> None:
    from common import settings, telemetry
    from common.logs import bind_invocation, masked_failures

    from .etl import process_blob

    data = blob.read()
    log = bind_invocation(context, blob=blob.name)
    attributes = {"faas.trigger": "datasource", "app.blob.name": blob.name, "app.blob.bytes": len(data)}
    with masked_failures(), telemetry.invocation_span(context, "BlobEtl", attributes=attributes):
        # A blob that cannot be read completes with a "failed" summary (retrying cannot fix it);
        # a transient write failure raises, and the platform retries the blob (writes are upserts).
        await process_blob(data, source_blob=blob.name or "", cfg=settings.etl_settings(), log=log)
