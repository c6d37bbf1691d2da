"""The app's one error model: three kinds of failure, and what each trigger does with them.

Every exception the app raises on purpose is one of these, so a reader can tell
from its type alone whether an invocation completes or fails, as azure-core's
``exceptions.py`` does for the SDKs::

    from common.errors import InvalidInput, TransientFailure

    raise InvalidInput("'name' must be a string.")           # never heals: refuse it, set it aside
    raise TransientFailure("Key Vault is unreachable")       # may heal: let the platform retry

=====================  ===================================  =========================================
kind                   meaning                              what each trigger does with it
=====================  ===================================  =========================================
ConfigurationError     an app setting (or a resource the    fails the invocation, with the setting's
                       settings point at) is missing or     name; every retry fails the same way until
                       malformed: an operator must fix it   the setting is fixed, so it is logged as
                                                            an error, not retried in a loop
InvalidInput           this input can never succeed,        HTTP: a 4xx with a JSON body. Service Bus:
                       whatever the number of retries       the message goes to the invalid queue with
                                                            its reason and the invocation completes.
                                                            Blob: the record (or blob) is named in the
                                                            summary; the invocation completes
TransientFailure       a dependency failed in a way a       HTTP: 503 with Retry-After. Service Bus and
                       later attempt may get past           blob: the invocation fails and the platform
                                                            redelivers (then dead-letters or poisons).
                                                            Timer: the run fails; the next run resumes
=====================  ===================================  =========================================

Errors from the Azure SDKs (``azure.core.exceptions``) are not wrapped on their
way up: :func:`common.retry.is_transient` classifies them where a retry decision
is made. What reaches the host passes through :func:`common.logs.masked_failures`,
which re-raises it as :class:`InvocationFailed` with a masked message.
"""

from __future__ import annotations

__all__ = ["AppError", "ConfigurationError", "InvalidInput", "InvocationFailed", "TransientFailure"]


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

    def __init__(self, detail: str, *, reason: str = "invalid") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class TransientFailure(AppError):
    """A dependency failed in a way a later attempt may get past: the platform should retry."""


class InvocationFailed(AppError):
    """What a function raises to the host: the cause's masked description, never its raw message.

    The runtime hands an escaping exception's message and stack trace to the host, which logs
    them: an SDK error can quote a connection string there. Raised only by
    :func:`common.logs.masked_failures`.
    """
