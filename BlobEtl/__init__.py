"""BlobEtl: a JSON or JSON Lines blob lands in storage; its records go to Cosmos DB, a summary back to storage."""

from __future__ import annotations

import azure.functions as func

from common import settings
from common.logs import bind_invocation

from .etl import process_blob


async def main(blob: func.InputStream, context: func.Context) -> None:
    log = bind_invocation(context, blob=blob.name)
    # A blob that cannot be read completes with a "failed" summary (retrying cannot fix it);
    # a transient write failure raises, and the platform retries the blob (writes are upserts).
    await process_blob(blob.read(), source_blob=blob.name or "", cfg=settings.etl_settings(), log=log)
