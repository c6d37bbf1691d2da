"""CloudEvents 1.0 in JSON (structured mode): the rules both ends of the event chain apply.

PublishEvent checks an event against these rules before it publishes it to Event Grid, and
QueueProcessor checks what Event Grid delivered through Service Bus against the same rules,
so an event that one end accepts, the other accepts too::

    from common import cloud_events

    if cloud_events.is_cloud_event(value):
        event = cloud_events.validate(value)      # CloudEventError names the attribute

The rules are the CloudEvents 1.0 specification's (https://github.com/cloudevents/spec,
``cloudevents/spec.md`` and ``cloudevents/formats/json-format.md``) plus two limits of the
chain: an ``id`` becomes the Service Bus message id (at most 128 characters), and the W3C
trace context travels in the ``traceparent``/``tracestate`` extension attributes of the
distributed tracing extension (``cloudevents/extensions/distributed-tracing.md``).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from common.errors import InvalidInput
from common.strict_json import has_unpaired_surrogate

__all__ = [
    "CONTEXT_ATTRIBUTES",
    "CloudEventError",
    "MAX_ID_LENGTH",
    "SPEC_VERSION",
    "TRACE_ATTRIBUTES",
    "is_cloud_event",
    "parse_time",
    "valid_traceparent",
    "validate",
]

SPEC_VERSION = "1.0"
#: Service Bus message ids are at most 128 characters, and Event Grid sets the message id
#: of each delivery from the event's id (infra/resources.bicep).
MAX_ID_LENGTH = 128
#: Longest value of the other string attributes we accept (source, type, subject, ...).
MAX_ATTRIBUTE_LENGTH = 1024
#: Attributes the specification defines, which are therefore not extensions.
CONTEXT_ATTRIBUTES = frozenset({"specversion", "id", "source", "type", "subject", "time", "datacontenttype",
                                "dataschema", "data", "data_base64"})
#: The distributed tracing extension's attributes.
TRACE_ATTRIBUTES = ("traceparent", "tracestate")
#: "lower-case letters ('a' to 'z') or digits ('0' to '9') ... SHOULD NOT exceed 20 characters", and
#: at least one letter: azure-core's CloudEvent (which the Event Grid SDK sends) refuses digits only.
_EXTENSION_NAME = re.compile(r"(?=[a-z0-9]*[a-z])[a-z0-9]{1,20}")
#: RFC 3339 date-time (section 5.6), the form the specification requires for ``time``.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


class CloudEventError(InvalidInput):
    """The value is not a valid CloudEvent; the detail names the attribute and the rule."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, reason="invalid_cloud_event")


def is_cloud_event(value: object) -> bool:
    """A JSON object that claims to be a CloudEvent (it has ``specversion``)."""
    return isinstance(value, dict) and "specversion" in value


def _text(name: str, value: object, *, required: bool, limit: int = MAX_ATTRIBUTE_LENGTH) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise CloudEventError(f"'{name}' must be a non-empty string")
    if len(value) > limit:
        raise CloudEventError(f"'{name}' must be at most {limit} characters long")
    if has_unpaired_surrogate(value):
        raise CloudEventError(f"'{name}' holds an unpaired UTF-16 surrogate, which is not text")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise CloudEventError(f"'{name}' must not contain control characters")


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp with its offset; ValueError otherwise."""
    if not _RFC3339.fullmatch(value):
        raise ValueError(value)
    # Python 3.11+ reads "Z" and any number of fraction digits (keeping microseconds).
    return datetime.fromisoformat(value.upper())


def validate(event: Mapping[str, Any]) -> dict[str, Any]:
    """``event`` checked against the rules above, as a dict; :class:`CloudEventError` otherwise."""
    if event.get("specversion") != SPEC_VERSION:
        raise CloudEventError(f"'specversion' must be \"{SPEC_VERSION}\" (the version Event Grid accepts)")
    _text("id", event.get("id"), required=True, limit=MAX_ID_LENGTH)
    _text("source", event.get("source"), required=True)
    _text("type", event.get("type"), required=True)
    for name in ("subject", "datacontenttype", "dataschema"):
        if name in event:
            _text(name, event[name], required=True)
    if "time" in event:
        value = event["time"]
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            parse_time(value)
        except ValueError:
            raise CloudEventError("'time' must be an RFC 3339 timestamp with an offset, "
                                  "such as '2026-11-27T10:00:00Z'") from None
    if "data" in event and "data_base64" in event:
        raise CloudEventError("an event has 'data' or 'data_base64', not both")
    if "data_base64" in event:
        encoded = event["data_base64"]
        try:
            if not isinstance(encoded, str):
                raise ValueError(encoded)
            # Canonical only (padding, no stray bits): what is stored is then what was sent, byte for byte.
            if base64.b64encode(base64.b64decode(encoded, validate=True)).decode() != encoded:
                raise ValueError(encoded)
        except (ValueError, binascii.Error):
            raise CloudEventError("'data_base64' must be a canonical base64 string") from None
    for name, value in event.items():
        if name in CONTEXT_ATTRIBUTES:
            continue
        if not _EXTENSION_NAME.fullmatch(name):
            raise CloudEventError(f"extension attribute {name[:40]!r} must be named with 1 to 20 lower-case "
                                  "letters and digits, at least one a letter")
        if isinstance(value, bool) or isinstance(value, int):
            if not isinstance(value, bool) and not -(2**31) <= value < 2**31:
                raise CloudEventError(f"extension attribute '{name}' must be an integer of 32 bits")
            continue
        if not isinstance(value, str):
            raise CloudEventError(f"extension attribute '{name}' must be a string, an integer or a boolean")
        _text(name, value, required=False)
    return dict(event)


def valid_traceparent(value: object) -> str | None:
    """``value`` when it is a W3C ``traceparent`` of version 00 with non-zero ids, else None."""
    if not isinstance(value, str) or not _TRACEPARENT.fullmatch(value):
        return None
    _, trace_id, span_id, _ = value.split("-")
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return value
