"""A fanned-out run's storage: the blobs of one version's run under ``_runs/<token>/`` in the summary container."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from common.retry import RetryPolicy, retry_async, summary_upload_policy
from common.settings import EtlSettings

from .blobs import BlobChanged, BlobVersion, is_current

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobServiceClient

RUNS_PREFIX = "_runs"


class RunStore:
    """The blobs of one version's run, in the summary container under ``_runs/<token>/``."""

    def __init__(self, blob_service: BlobServiceClient, summary_container: str, version: BlobVersion,
                 policy: RetryPolicy) -> None:
        self.blob_service = blob_service
        self.container = summary_container
        self.version = version
        self.policy = policy
        self.prefix = f"{RUNS_PREFIX}/{version.token}/"

    def _client(self, leaf: str) -> Any:
        return self.blob_service.get_blob_client(self.container, self.prefix + leaf)

    async def _upload(self, leaf: str, document: dict[str, Any], *, only_if_new: bool = False) -> bool:
        """Write a JSON document; with ``only_if_new`` the write is a conditional create and
        answers False when the blob already exists."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContentSettings

        body = json.dumps(document, indent=1).encode()
        settings = ContentSettings(content_type="application/json")
        try:
            await retry_async(lambda: self._client(leaf).upload_blob(body, overwrite=not only_if_new,
                                                                      content_settings=settings), self.policy)
        except ResourceExistsError:
            return False
        return True

    async def _read(self, leaf: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        async def read() -> bytes:
            stream = await self._client(leaf).download_blob()
            return await stream.readall()

        try:
            document = json.loads(await retry_async(read, self.policy))
        except ResourceNotFoundError:
            return None
        return document if isinstance(document, dict) else None

    async def claim_split(self, message_id: str) -> bool:
        """True for the split message that owns this run (the first to claim it, or its redelivery)."""
        if await self._upload("claim.json", {"messageId": message_id, **self.version.to_dict()}, only_if_new=True):
            return True
        claim = await self._read("claim.json")
        return claim is not None and claim.get("messageId") == message_id

    async def read_manifest(self) -> dict[str, Any] | None:
        return await self._read("manifest.json")

    async def write_manifest(self, manifest: dict[str, Any]) -> None:
        await self._upload("manifest.json", manifest)

    async def read_result(self, number: int) -> dict[str, Any] | None:
        return await self._read(f"segment-{number:06d}.json")

    async def write_result(self, number: int, result: dict[str, Any]) -> None:
        await self._upload(f"segment-{number:06d}.json", result)

    async def count_results(self) -> int:
        async def count() -> int:
            found = 0
            async for _ in self.blob_service.get_container_client(self.container).list_blob_names(
                    name_starts_with=self.prefix + "segment-"):
                found += 1
            return found

        return await retry_async(count, self.policy)

    async def create_summary(self, document: dict[str, Any]) -> bool:
        """The version's summary, created once: False when another finisher created it first."""
        return await self._upload("summary.json", document, only_if_new=True)

    async def read_summary(self) -> dict[str, Any] | None:
        return await self._read("summary.json")

    async def read_range(self, start: int, end: int) -> bytes:
        """Bytes ``start`` .. ``end - 1`` of this version; :class:`BlobChanged` once the blob changed."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        if end <= start:
            return b""
        client = self.blob_service.get_blob_client(self.version.container, self.version.name)

        async def read() -> bytes:
            stream = await client.download_blob(offset=start, length=end - start, etag=self.version.etag,
                                                match_condition=MatchConditions.IfNotModified)
            return await stream.readall()

        try:
            return await retry_async(read, self.policy)
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise BlobChanged(f"{self.version.ref} is no longer version {self.version.etag}") from exc
        except Exception as exc:  # a 412 some SDK versions raise as a plain HttpResponseError
            if getattr(exc, "status_code", None) == 412:
                raise BlobChanged(f"{self.version.ref} is no longer version {self.version.etag}") from exc
            raise

    async def is_current(self) -> bool:
        """Whether the blob is still this version (the check between a segment's batches)."""
        return await retry_async(lambda: is_current(self.blob_service, self.version.ref, self.version.etag),
                                 self.policy)


# ------------------------------------------------------------------------- the split

def run_store(version: BlobVersion, cfg: EtlSettings, blob_service: BlobServiceClient) -> RunStore:
    return RunStore(blob_service, cfg.summary_container, version, summary_upload_policy(cfg.write_budget_seconds))
