"""Cosmos DB helpers shared by BlobEtl and CleanupTimer: the container's partition key.

The app never assumes a partition key path: it reads the container's
properties once per process and takes each item's key from that path::

    from common.cosmos import partition_key_of

    key = await partition_key_of(container)   # PartitionKeyPath(paths=('/metadata/source',), ...)
    key.value_of(item)                       # item["metadata"]["source"]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.errors import ConfigurationError

if TYPE_CHECKING:
    from azure.cosmos.aio import ContainerProxy

__all__ = ["PartitionKeyPath", "RequestCharge", "partition_key_of", "reset"]


@dataclass(frozen=True)
class PartitionKeyPath:
    """The container's partition key definition: one path (``Hash``) or several (``MultiHash``)."""

    paths: tuple[str, ...]
    hierarchical: bool = False

    @classmethod
    def from_properties(cls, properties: dict[str, Any]) -> PartitionKeyPath:
        definition = properties.get("partitionKey") or {}
        paths = tuple(definition.get("paths") or ())
        if not paths:
            raise ConfigurationError("COSMOS_CONTAINER",
                                     f"names container '{properties.get('id')}', which reports no partition key paths")
        for path in paths:
            if not path.startswith("/") or path == "/":
                raise ConfigurationError("COSMOS_CONTAINER", f"names a container with an unsupported partition key path {path!r}")
        return cls(paths=paths, hierarchical=definition.get("kind") == "MultiHash" or len(paths) > 1)

    @staticmethod
    def segments(path: str) -> list[str]:
        return [segment for segment in path.strip("/").split("/")]

    def _value_at(self, item: dict[str, Any], path: str) -> Any:
        node: Any = item
        for segment in self.segments(path):
            if not isinstance(node, dict) or segment not in node:
                raise KeyError(path)
            node = node[segment]
        return node

    def value_of(self, item: dict[str, Any]) -> Any:
        """The partition key value of ``item`` (a list for hierarchical keys). KeyError if absent."""
        if self.hierarchical:
            return [self._value_at(item, path) for path in self.paths]
        return self._value_at(item, self.paths[0])

    def select_expressions(self, alias: str = "c") -> list[str]:
        """SQL expressions for each path, segment names quoted (never a value from input)."""
        return [alias + "".join(f"[{json.dumps(segment)}]" for segment in self.segments(path)) for path in self.paths]


_known: dict[tuple[str, str], PartitionKeyPath] = {}


async def partition_key_of(container: ContainerProxy) -> PartitionKeyPath:
    """The container's partition key definition, read once per process."""
    key = (str(getattr(container, "database_link", "")), container.id)
    known = _known.get(key)
    if known is None:
        known = PartitionKeyPath.from_properties(await container.read())
        _known[key] = known
    return known


def reset() -> None:
    """Forget every container's definition (tests only)."""
    _known.clear()


class RequestCharge:
    """Adds up the request units Cosmos DB reports; pass it as an operation's ``response_hook``."""

    def __init__(self) -> None:
        self.total = 0.0

    def __call__(self, headers: Mapping[str, str], _body: Any) -> None:
        try:
            self.total += float(headers.get("x-ms-request-charge", 0) or 0)
        except (TypeError, ValueError):
            pass
