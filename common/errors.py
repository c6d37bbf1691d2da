"""The app's one error model: three kinds of failure, each with one outcome per trigger.

Every exception the app raises on purpose is one of these, so its type alone says whether
an invocation completes or fails; :mod:`common.invocation` looks the outcome up by class
(the table is in docs/architecture.md)::

    raise InvalidInput("'name' must be a string.")           # never heals: refuse it, set it aside
    raise TransientFailure("Key Vault is unreachable")       # may heal: let the platform retry

SDK errors (``azure.core.exceptions``) are not wrapped: :func:`common.retry.is_transient`
classifies them where a retry decision is made.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["AppError", "ConfigurationError", "InvalidInput", "InvocationFailed", "Reason", "TransientFailure"]

#: Every reason code an :class:`InvalidInput` carries: the stable codes that logs, metrics, summaries
#: and set-aside messages report (mypy holds each raise to this list).
Reason = Literal[
    "invalid",
    # a body, message or record read by common.strict_json
    "not_utf8", "not_json", "too_deep", "number_too_long", "number_out_of_range", "non_standard",
    # HTTP requests
    "bad_request", "empty", "not_object", "batch", "too_large", "bad_idempotency_key",
    "unsupported_media_type", "unsupported_charset", "invalid_cloud_event", "refused_by_event_grid",
    # Service Bus messages (QueueProcessor)
    "missing_id", "not_storable", "result_too_large",
    # the data pipeline
    "bad_event", "bad_blob_path", "bad_work_message", "unreadable_blob", "invalid_record",
    # callers (identity/)
    "unauthenticated", "bad_credentials", "forbidden",
    # the orders API (orders/)
    "invalid_order", "not_found", "precondition_required", "precondition_failed", "bad_precondition",
    "illegal_transition", "not_editable", "idempotency_key_reused", "bad_query",
]


class AppError(Exception):
    """Base of every error the app raises on purpose."""


class ConfigurationError(AppError):
    """An app setting (or another piece of configuration: ``source``) is missing or malformed.
    The message names it; ``setting`` holds the name."""

    def __init__(self, setting: str, problem: str, *, source: str = "App setting") -> None:
        super().__init__(f"{source} '{setting}' {problem}")
        self.setting = setting


class InvalidInput(AppError):
    """Input that can never succeed: refuse it (4xx), set it aside, or name it in a summary.

    ``reason`` is a short stable code for metrics and routing (``not_json``, ``too_deep``);
    the message is the human-readable detail.
    """

    def __init__(self, detail: str, *, reason: Reason = "invalid") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class TransientFailure(AppError):
    """A dependency failed in a way a later attempt may get past: the platform should retry."""


class InvocationFailed(AppError):
    """What a function raises to the host: the cause's masked description, never its raw message.

    The runtime hands an escaping exception's message and stack trace to the host, which logs
    them: an SDK error can quote a connection string there. Raised only by
    :func:`common.invocation.run`.
    """
