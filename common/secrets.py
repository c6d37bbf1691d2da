"""Key Vault secrets with a time-to-live cache and one fetch in flight per name.

::

    from common.secrets import SecretUnavailableError, get_secret

    api_key = await get_secret("greeting-api-key", local_setting="API_KEY")

With ``KEY_VAULT_URL`` set, the secret is read from the vault through the
app's managed identity, kept in memory for ``SECRET_CACHE_TTL_SECONDS``
(default 300), and fetched once however many invocations ask at the same
moment. If the vault cannot be reached after the value expired, the last
value is still served for up to ``SECRET_MAX_STALE_SECONDS`` (default 3600)
so that a vault blip does not take the API down; past that,
:class:`SecretUnavailableError` is raised.

With ``KEY_VAULT_URL`` empty (local development only) the value comes from
the app setting named by ``local_setting``. A secret that exists nowhere is
``None``; callers decide what that means (HttpGreeting refuses every request).
Every value read is registered with :func:`common.logs.register_secret`, so it
is masked if it ever reaches a log line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from common import settings
from common.errors import TransientFailure
from common.logs import describe_error, register_secret

__all__ = ["SecretStore", "SecretUnavailableError", "get_secret", "reset"]

_log = logging.getLogger("app.common.secrets")  # under "app": the loggers Azure Monitor exports

#: A vault read that takes longer than this counts as the vault being unreachable.
FETCH_TIMEOUT_SECONDS = 10.0
#: How long "this secret does not exist" is remembered.
MISSING_TTL_SECONDS = 30.0
#: While the vault is unreachable and a stale value is being served, how often to try again.
STALE_RETRY_SECONDS = 30.0


class SecretUnavailableError(TransientFailure):
    """The vault could not be reached, or refused the app's identity. Retry later."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"Key Vault secret '{name}' is unavailable: {reason}")
        self.secret_name = name


@dataclass
class _Entry:
    value: str | None
    fetched_at: float
    #: When a refresh last failed; until STALE_RETRY_SECONDS later the stale value is served at once.
    failed_at: float | None = None


Fetcher = Callable[[str], Awaitable[str | None]]


async def _fetch_from_vault(name: str) -> str | None:
    from azure.core.exceptions import ResourceNotFoundError

    from common.clients import secret_client

    try:
        secret = await secret_client().get_secret(name)
    except ResourceNotFoundError:
        return None
    return secret.value


class SecretStore:
    """The cache behind :func:`get_secret`; tests build their own with a fake fetcher and clock."""

    def __init__(
        self,
        fetch: Fetcher = _fetch_from_vault,
        *,
        clock: Callable[[], float] = time.monotonic,
        config: Callable[[], settings.SecretSettings] = settings.secret_settings,
        local_value: Callable[[str], str | None] = settings.local_secret,
    ) -> None:
        """``config`` and ``local_value`` default to the app settings (read on each call, cached
        there); a test passes its own instead of changing the environment."""
        self._fetch = fetch
        self._clock = clock
        self._config = config
        self._local_value = local_value
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[str | None]] = {}

    async def get(self, name: str, *, local_setting: str | None = None) -> str | None:
        config = self._config()
        if config.key_vault_url is None:
            value = self._local_value(local_setting) if local_setting else None
            register_secret(value)
            return value

        now = self._clock()
        entry = self._entries.get(name)
        if entry is not None:
            ttl = config.cache_ttl_seconds if entry.value is not None else min(config.cache_ttl_seconds, MISSING_TTL_SECONDS)
            if now - entry.fetched_at < ttl:
                return entry.value
            if (entry.value is not None and entry.failed_at is not None and now - entry.failed_at < STALE_RETRY_SECONDS
                    and now - entry.fetched_at < config.max_stale_seconds):
                return entry.value  # the vault failed moments ago: don't make every caller wait for it again

        pending = self._inflight.get(name)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(self._refresh(name, entry, config.max_stale_seconds))
            self._inflight[name] = pending
            pending.add_done_callback(functools.partial(self._forget, name))
        # shield: one caller giving up (timeout, cancellation) must not cancel the others' fetch.
        return await asyncio.shield(pending)

    def _forget(self, name: str, future: asyncio.Future[str | None]) -> None:
        if self._inflight.get(name) is future:
            del self._inflight[name]
        if not future.cancelled():
            future.exception()  # mark retrieved: every waiter has already seen it

    async def _refresh(self, name: str, stale: _Entry | None, max_stale: float) -> str | None:
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_SECONDS):
                value = await self._fetch(name)
        except Exception as exc:  # noqa: BLE001 - every failure means "unavailable"
            reason = describe_error(exc)
            if stale is not None and stale.value is not None and self._clock() - stale.fetched_at < max_stale:
                _log.warning("Key Vault read of secret '%s' failed (%s); serving the cached value", name, reason)
                stale.failed_at = self._clock()
                return stale.value
            raise SecretUnavailableError(name, reason) from None
        register_secret(value)
        self._entries[name] = _Entry(value, self._clock())
        return value

    def clear(self) -> None:
        self._entries.clear()
        self._inflight.clear()


_default_store = SecretStore()


async def get_secret(name: str, *, local_setting: str | None = None) -> str | None:
    """The secret's value, from the vault (cached) or, locally, from ``local_setting``."""
    return await _default_store.get(name, local_setting=local_setting)


def reset() -> None:
    """Forget every cached secret (tests only)."""
    _default_store.clear()
