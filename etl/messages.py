"""The work queue's messages: a split of a blob version, or one of its segments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from common.errors import InvalidInput

from .blobs import BlobVersion
from .records import BlobFormat
from .splitting import Segment

MESSAGE_VERSION = 1


@dataclass(frozen=True)
class SplitWork:
    version: BlobVersion
    started_at: str
    kind: Literal["split"] = "split"


@dataclass(frozen=True)
class SegmentWork:
    version: BlobVersion
    started_at: str
    format: BlobFormat
    segment: Segment
    segments: int
    kind: Literal["segment"] = "segment"


Work = SplitWork | SegmentWork


def encode_work(work: Work) -> bytes:
    body: dict[str, Any] = {"v": MESSAGE_VERSION, "kind": work.kind, **work.version.to_dict(),
                            "startedAt": work.started_at}
    if isinstance(work, SegmentWork):
        body.update(format=work.format, segments=work.segments, **work.segment.to_dict())
    return json.dumps(body, separators=(",", ":")).encode()


def parse_work(body: bytes) -> Work:
    """A work message; :class:`InvalidInput` (``bad_work_message``) naming what is wrong."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("v") != MESSAGE_VERSION:
            raise ValueError(f"not a version {MESSAGE_VERSION} work message")
        container, _, name = str(data["blob"]).partition("/")
        if not container or not name:
            raise ValueError("'blob' is not '<container>/<name>'")
        version = BlobVersion(container, name, _text(data, "etag"), _count(data, "size"))
        started_at = _text(data, "startedAt")
        if data.get("kind") == "split":
            return SplitWork(version, started_at)
        if data.get("kind") != "segment":
            raise ValueError("'kind' must be 'split' or 'segment'")
        fmt = data.get("format")
        if fmt not in ("json", "jsonl"):
            raise ValueError("'format' must be 'json' or 'jsonl'")
        first_line = data.get("firstLine")
        segment = Segment(_count(data, "segment"), _count(data, "start"), _count(data, "end"),
                          _count(data, "firstIndex"), _count(data, "records"),
                          first_line=first_line if isinstance(first_line, int) else None,
                          oversized=data.get("oversized") is True)
        segments = _count(data, "segments")
        if segment.number >= segments or segment.end < segment.start or segment.end > version.size:
            raise ValueError("the segment's number or byte range does not fit the blob")
        return SegmentWork(version, started_at, fmt, segment, segments)
    except (ValueError, KeyError, TypeError) as exc:
        detail = str(exc) if not isinstance(exc, KeyError) else f"{exc} is missing"
        raise InvalidInput(f"work message is malformed: {detail}", reason="bad_work_message") from None


def _text(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{name}' must be a non-empty string")
    return value


def _count(data: dict[str, Any], name: str) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"'{name}' must be a whole number of at least 0")
    return value


# ------------------------------------------------------------------- the run's storage
