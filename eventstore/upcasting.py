"""Upcasters: old event shapes read as the current one, so stored events never need rewriting.

Each event type has a current schema version; an upcaster lifts data from version ``n`` to
``n + 1``, and reading applies them in turn::

    UPCASTERS = Upcasters({"OrderCreated": 2})

    @UPCASTERS.register("OrderCreated", 1)
    def _lines_with_decimal_prices(data):     # v1 had "price" as a JSON number
        ...

An event newer than the code, or a gap in the chain, is :class:`UnknownEventVersion`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from eventstore.errors import UnknownEventVersion

__all__ = ["Upcaster", "Upcasters"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    def __init__(self, current: Mapping[str, int]) -> None:
        self.current = dict(current)
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register the step that lifts ``event_type`` data from ``from_version`` to the next."""
        if from_version >= self.current.get(event_type, 1):
            raise ValueError(f"{event_type} v{from_version} is not older than its current version")

        def add(step: Upcaster) -> Upcaster:
            self._steps[(event_type, from_version)] = step
            return step

        return add

    def version_of(self, event_type: str) -> int:
        """The schema version new events of this type are written with."""
        return self.current.get(event_type, 1)

    def upcast(self, event_type: str, schema_version: int, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` of ``schema_version`` as the current version's shape."""
        current = self.version_of(event_type)
        if schema_version > current:
            raise UnknownEventVersion(f"Event type '{event_type}' v{schema_version} is newer than this code "
                                      f"(which reads up to v{current}): deploy the newer version.")
        while schema_version < current:
            step = self._steps.get((event_type, schema_version))
            if step is None:
                raise UnknownEventVersion(f"No upcaster lifts '{event_type}' from v{schema_version}.")
            data = step(data)
            schema_version += 1
        return data
