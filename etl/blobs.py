"""Blobs by reference and by version: a path, an ETag, and whether the blob is still that version."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.errors import InvalidInput

if TYPE_CHECKING:
    from azure.storage.blob.aio import BlobServiceClient


@dataclass(frozen=True)
class BlobRef:
    container: str
    name: str

    @classmethod
    def parse(cls, path: str) -> BlobRef:
        """``"<container>/<name>"`` as the blob trigger reports it."""
        container, _, name = path.strip("/").partition("/")
        if not container or not name:
            raise InvalidInput(f"blob path {path!r} is not '<container>/<name>'", reason="bad_blob_path")
        return cls(container, name)

    def __str__(self) -> str:
        return f"{self.container}/{self.name}"


def same_etag(left: str | None, right: str | None) -> bool:
    """ETags compared without their quotes (Event Grid sends ``0x8D...``, the SDK ``"0x8D..."``)."""
    return left is not None and right is not None and left.strip('"') == right.strip('"')


async def is_current(blob_service: BlobServiceClient, source: BlobRef, etag: str) -> bool:
    """Whether ``source`` is still the version ``etag`` (False once it changed or was deleted)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        properties = await blob_service.get_blob_client(source.container, source.name).get_blob_properties()
    except ResourceNotFoundError:
        return False
    return same_etag(properties.etag, etag)



class BlobChanged(Exception):
    """The blob is no longer the version being processed (overwritten or deleted)."""



@dataclass(frozen=True)
class BlobVersion:
    """One version of a source blob: its path and ETag (quoted, as the SDK reports it), and size."""

    container: str
    name: str
    etag: str
    size: int

    @property
    def ref(self) -> BlobRef:
        return BlobRef(self.container, self.name)

    @property
    def token(self) -> str:
        """Names the version's run: a digest of path and ETag (a blob name may be 1,024 characters)."""
        text = f"{self.container}/{self.name}\n{self.etag.strip(chr(34))}"
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]

    def to_dict(self) -> dict[str, Any]:
        return {"blob": str(self.ref), "etag": self.etag, "size": self.size}


async def read_version(blob_service: BlobServiceClient, source: BlobRef) -> BlobVersion | None:
    """The blob's current version, or None when it no longer exists."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        properties = await blob_service.get_blob_client(source.container, source.name).get_blob_properties()
    except ResourceNotFoundError:
        return None
    return BlobVersion(source.container, source.name, properties.etag, properties.size)



async def download_version(blob_service: BlobServiceClient, version: BlobVersion) -> bytes | None:
    """The whole (small) blob at ``version``; None when it changed meanwhile."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

    client = blob_service.get_blob_client(version.container, version.name)
    try:
        stream = await client.download_blob(etag=version.etag, match_condition=MatchConditions.IfNotModified)
        return await stream.readall()
    except (ResourceModifiedError, ResourceNotFoundError):
        return None
