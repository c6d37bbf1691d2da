"""Structured logs that carry the invocation's identity and never a secret.

Bind once per invocation, then log events with fields::

    from common.logs import bind_invocation

    log = bind_invocation(context, correlation_id=message.correlation_id)
    log.info("message.forwarded", outputMessageId=out_id, durationMs=12.5)

Each record's message is one JSON object (``event``, ``function``,
``invocationId``, ``correlationId`` and the fields), so a KQL query can
``parse_json`` it; the same fields ride on the record as ``extra`` for
handlers that read attributes. Every string is passed through
:func:`redact`, which masks connection-string keys, SAS signatures, bearer
tokens and any value registered with :func:`register_secret`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from common.errors import InvocationFailed

__all__ = ["InvocationFailed", "InvocationLog", "bind_invocation", "describe_error", "redact",
           "sane_correlation_id",
           "register_secret"]

_KEY_VALUE = re.compile(
    # A key name starts a word, or follows a URL-encoded ';', '&' or space ("...%3BAccountKey%3D...").
    r"(?i)(?:\b|(?<=%3B)|(?<=%26)|(?<=%20))(AccountKey|SharedAccessKeyName|SharedAccessKey|SharedAccessSignature|sig|AccessKey|Password|Pwd|client_secret|"
    r"api[_-]?key)"
    r"(\"?\s*(?:=|:|%3D)\s*)(\"?)([^;&\s\"',}]+)"
)
_BEARER = re.compile(r"(?i)\b(Bearer)\s+[A-Za-z0-9\-._~+/]+=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")

#: The SDKs' own loggers, which log every HTTP request and AMQP frame at INFO: the worker forwards
#: them as noise (two records per Cosmos DB request). host.json's logLevel filters only the host's
#: logs, never the worker's, so they are quietened here, where every function's logging starts.
SDK_LOGGERS = ("azure", "aiohttp.access", "uamqp")
_SANE_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def sane_correlation_id(value: object) -> str | None:
    """``value`` when it is a correlation id fit for a log line (1-128 of ``A-Za-z0-9._:-``), else None:
    a caller's id is logged, so it must not be able to forge or flood a log record."""
    return value if isinstance(value, str) and _SANE_CORRELATION_ID.fullmatch(value) else None


def quiet_sdk_loggers() -> None:
    """Warnings and errors only from the SDKs, unless a level was set for them already."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


quiet_sdk_loggers()

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_MIN_SECRET_LENGTH = 6


def register_secret(value: str | None) -> None:
    """Mask this exact value wherever it would appear in a log line or error text."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Mask secrets in free text (connection strings, SAS tokens, bearer tokens, known secrets)."""
    for secret in tuple(_secrets):
        if secret in text:
            text = text.replace(secret, "***")
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}***", text)
    text = _BEARER.sub(r"\1 ***", text)
    return _JWT.sub("***", text)


def describe_error(exc: BaseException, limit: int = 500) -> str:
    """``TypeName: message`` with secrets masked and length bounded, for logs and summaries."""
    message = redact(str(exc)).strip().splitlines()
    first = message[0] if message else ""
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, BaseException):
        return describe_error(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value))


class _Context(Protocol):
    @property
    def invocation_id(self) -> str: ...

    @property
    def function_name(self) -> str: ...


class InvocationLog:
    """A logger bound to one invocation's identity fields."""

    __slots__ = ("_logger", "_fields")

    def __init__(self, logger: logging.Logger, fields: Mapping[str, Any]) -> None:
        self._logger = logger
        self._fields = dict(fields)

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self._fields)

    def bind(self, **fields: Any) -> InvocationLog:
        """A copy that adds ``fields`` to every later record."""
        return InvocationLog(self._logger, {**self._fields, **fields})

    def _log(self, level: int, event: str, fields: Mapping[str, Any]) -> None:
        if not self._logger.isEnabledFor(level):
            return
        payload = _clean({"event": event, **self._fields, **fields})
        message = json.dumps(payload, ensure_ascii=False, default=str, separators=(",", ":"))
        self._logger.log(level, message, extra={"structured": payload})

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, error: BaseException, **fields: Any) -> None:
        """An error with its type, masked message and the place it was raised.

        The traceback itself is not logged: frames can hold secrets in locals.
        """
        where = None
        tb = error.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
        self._log(logging.ERROR, event, {**fields, "error": describe_error(error), "errorAt": where})


def _trace_id(context: Any) -> str | None:
    """The W3C trace id of the invocation (``00-<trace id>-<span id>-<flags>``)."""
    trace_parent = getattr(getattr(context, "trace_context", None), "trace_parent", None)
    if isinstance(trace_parent, str):
        parts = trace_parent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
            return parts[1]
    return None


def bind_invocation(
    context: _Context | None,
    *,
    correlation_id: str | None = None,
    logger: logging.Logger | None = None,
    **fields: Any,
) -> InvocationLog:
    """Bind the Functions ``context`` (function name, invocation id, trace id) and a correlation id."""
    function_name = getattr(context, "function_name", None)
    invocation_id = getattr(context, "invocation_id", None)
    base: dict[str, Any] = {"function": function_name, "invocationId": invocation_id}
    base["correlationId"] = correlation_id or invocation_id
    trace_id = _trace_id(context)
    if trace_id is not None:
        base["traceId"] = trace_id  # Application Insights' operation_Id: joins logs, traces and metrics
    base.update(fields)
    return InvocationLog(logger or logging.getLogger(f"app.{function_name or 'function'}"), base)
