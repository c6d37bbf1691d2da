"""Problem details (RFC 9457): the error body of the orders API, ``application/problem+json``.

A route that answers with problem details raises :class:`Problem` (an :class:`InvalidInput`, so
the error model treats it as any refused input) and builds its responder with ``problems=True``;
:meth:`common.http_api.Responder.guard` writes the body::

    raise Problem(412, "precondition-failed", "The order has changed since you read it.",
                  reason="precondition_failed", headers={"ETag": '"7"'})
    # {"type": "tag:serverless-patterns,2026:problems/precondition-failed", "title": "Precondition Failed",
    #  "status": 412, "detail": "The order has changed since you read it."}

``errors`` lists per-field problems, each ``{"pointer": <JSON Pointer into the body>, "detail": ...}``.
Problem types are tag URIs (RFC 4151, as RFC 9457 section 4 suggests for types that are not meant
to be dereferenced); docs/orders.md lists each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from common.errors import InvalidInput, Reason

__all__ = ["PROBLEM_CONTENT_TYPE", "TYPE_PREFIX", "FieldError", "Problem", "problem_body"]

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "tag:serverless-patterns,2026:problems/"
#: A body with thousands of bad fields is told about the first of them, and how many more there are.
MAX_LISTED_ERRORS = 50

FieldError = Mapping[str, str]


class Problem(InvalidInput):
    """A refused request: its status, problem type (a slug under :data:`TYPE_PREFIX`), detail,
    per-field ``errors`` and response ``headers``."""

    def __init__(self, status: int, slug: str, detail: str, *, reason: Reason,
                 errors: Sequence[FieldError] = (), headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail, reason=reason)
        self.status = status
        self.slug = slug
        self.errors = list(errors)
        self.headers = dict(headers or {})


def problem_body(status: int, detail: str, *, slug: str | None = None,
                 errors: Sequence[FieldError] = ()) -> dict[str, Any]:
    """The RFC 9457 object: ``type`` (``about:blank`` when the status says it all), ``title`` (the
    status phrase), ``status``, ``detail`` and, when any, ``errors``."""
    body: dict[str, Any] = {"type": TYPE_PREFIX + slug if slug else "about:blank",
                            "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
    if errors:
        listed = [dict(error) for error in errors[:MAX_LISTED_ERRORS]]
        if len(errors) > MAX_LISTED_ERRORS:
            listed.append({"pointer": "", "detail": f"... and {len(errors) - MAX_LISTED_ERRORS} more problems"})
        body["errors"] = listed
    return body
