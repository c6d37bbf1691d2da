"""The issuer's signing keys (JWKS): fetched asynchronously, cached, refetched on an unknown ``kid``.

One :class:`SigningKeys` per event loop and issuer (:func:`signing_keys`) serves every
invocation of the worker::

    keys = signing_keys(cfg.jwks_urls)
    key = await keys.key_for(kid)        # a jwt.PyJWK; Unauthenticated or SigningKeysUnavailable

- The keys are kept for :data:`MAX_AGE_SECONDS`, then refetched; a failed refetch keeps the
  old keys (a JWKS outage does not lock out callers whose keys are known).
- An unknown ``kid`` refetches at most once per :data:`UNKNOWN_KID_COOLDOWN_SECONDS`, so a key
  the issuer adds is accepted within that time and a flood of forged ``kid`` s costs one fetch.
- One fetch in flight: concurrent callers wait for the same one.
- Unreachable, slow past :data:`FETCH_TIMEOUT_SECONDS`, or answering what is not a JWKS, with
  nothing cached: :class:`~identity.errors.SigningKeysUnavailable` (503), never a pass.

Microsoft's guidance: cache keys, refresh periodically, refetch on an unknown ``kid`` with a
bound on how often (https://learn.microsoft.com/entra/identity-platform/signing-key-rollover).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from common import loop_cache
from identity.errors import SigningKeysUnavailable, Unauthenticated

__all__ = ["FETCH_TIMEOUT_SECONDS", "MAX_AGE_SECONDS", "UNKNOWN_KID_COOLDOWN_SECONDS", "SigningKeys", "signing_keys"]

MAX_AGE_SECONDS = 3600.0
UNKNOWN_KID_COOLDOWN_SECONDS = 30.0
#: With nothing cached, a failed fetch is retried at most this often (the 503's Retry-After).
FAILURE_BACKOFF_SECONDS = 5.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 512 * 1024

#: ``fetch(url, timeout)``: the body of a 200 answer; raises for anything else.
Fetch = Callable[[str, float], Awaitable[bytes]]


class JwksError(Exception):
    """A key set that cannot be used: unreachable, not a 200, too large, or not a JWKS."""


def parse_jwks(body: bytes) -> dict[str, Any]:
    """``kid`` -> ``jwt.PyJWK`` for every RSA signing key of a JWKS document; :class:`JwksError` otherwise.

    Keys for encryption (``use: enc``), of another type, or without a ``kid`` are left out
    (PyJWT's PyJWKSet keeps them); a set with no usable key is an error, not an empty set.
    """
    import jwt

    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise JwksError("the key set is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError("the key set has no 'keys' list")
    keys: dict[str, Any] = {}
    for entry in entries:
        if not (isinstance(entry, dict) and entry.get("kty") == "RSA" and entry.get("use", "sig") == "sig"
                and isinstance(entry.get("kid"), str) and entry["kid"]):
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry, algorithm="RS256")
        except jwt.PyJWTError:
            continue  # a malformed key is unusable; the others still are
    if not keys:
        raise JwksError("the key set holds no RSA signing key")
    return keys


async def http_fetch(url: str, timeout: float) -> bytes:
    """GET ``url`` with aiohttp (the app's async transport), bounded in time and size."""
    import aiohttp

    session = loop_cache.get_or_build(("identity-http",), lambda: aiohttp.ClientSession(trust_env=False))
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False,
                               headers={"Accept": "application/json"}) as response:
            if response.status != 200:
                raise JwksError(f"the key set answered HTTP {response.status}")
            # To the end of the body, however many writes it comes in, and no further than the bound.
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_JWKS_BYTES:
                    break
            body = b"".join(chunks)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise JwksError(f"the key set could not be read: {type(exc).__name__}") from None
    if len(body) > MAX_JWKS_BYTES:
        raise JwksError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
    return body


class SigningKeys:
    """The signing keys published at ``urls`` (merged by ``kid``), cached as the module says."""

    def __init__(self, urls: Sequence[str], fetch: Fetch = http_fetch, *, clock: Callable[[], float] = time.monotonic,
                 max_age: float = MAX_AGE_SECONDS, cooldown: float = UNKNOWN_KID_COOLDOWN_SECONDS,
                 timeout: float = FETCH_TIMEOUT_SECONDS) -> None:
        self.urls = tuple(urls)
        self.fetch = fetch
        self.clock = clock
        self.max_age = max_age
        self.cooldown = cooldown
        self.timeout = timeout
        self.fetches = 0
        self._keys: dict[str, Any] | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._failed = False
        self._inflight: asyncio.Task[None] | None = None
        #: Tokens already validated against these keys (identity.tokens.ValidatedTokens).
        self.validated: Any = None

    def current(self, kid: str) -> Any:
        """The key held now under ``kid`` while the keys are fresh (no fetch), else None: a cached
        validation stands only while the very key that verified it is still published."""
        if self._keys is None or self.clock() - self._fetched_at >= self.max_age:
            return None
        return self._keys.get(kid)

    async def key_for(self, kid: str) -> Any:
        """The key named ``kid``; :class:`Unauthenticated` when the issuer does not publish it,
        :class:`SigningKeysUnavailable` when the keys cannot be read to tell."""
        now = self.clock()
        keys = self._keys
        if keys is not None:
            if kid in keys:
                if now - self._fetched_at >= self.max_age:
                    self._refresh_soon(now)  # past their age: refreshed behind this request, not in front of it
                return keys[kid]
            if self._inflight is not None and not self._inflight.done():
                await asyncio.shield(self._inflight)  # a refresh is under way: its answer decides
            elif now - self._attempted_at < self.cooldown:
                if self._failed:  # the last look failed: the keys held cannot tell, and no fetch per request
                    raise SigningKeysUnavailable("the issuer's signing keys could not be refreshed just now",
                                                 retry_after=int(FAILURE_BACKOFF_SECONDS))
                raise Unauthenticated("The token is signed with a key the issuer does not publish.")
            else:
                await self._refresh()
        elif self._failed and now - self._attempted_at < FAILURE_BACKOFF_SECONDS:
            raise SigningKeysUnavailable("the issuer's signing keys could not be read just now",
                                         retry_after=int(FAILURE_BACKOFF_SECONDS))
        else:
            await self._refresh()
        keys = self._keys
        if keys is None:
            raise SigningKeysUnavailable("the issuer's signing keys could not be read",
                                         retry_after=int(FAILURE_BACKOFF_SECONDS))
        if kid in keys:
            return keys[kid]
        if self._failed:  # stale keys, and the refetch that might have found this kid failed
            raise SigningKeysUnavailable("the issuer's signing keys could not be refreshed",
                                         retry_after=int(FAILURE_BACKOFF_SECONDS))
        raise Unauthenticated("The token is signed with a key the issuer does not publish.")

    def _refresh_soon(self, now: float) -> None:
        """Start a refresh in the background, at most once per :data:`FAILURE_BACKOFF_SECONDS`."""
        if (self._inflight is None or self._inflight.done()) and now - self._attempted_at >= FAILURE_BACKOFF_SECONDS:
            self._attempted_at = now
            self._inflight = asyncio.ensure_future(self._fetch_all())

    async def _refresh(self) -> None:
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._fetch_all())
        # Shielded: a caller that is cancelled does not cancel the fetch the others wait for.
        await asyncio.shield(self._inflight)

    async def _fetch_all(self) -> None:
        self._attempted_at = self.clock()
        self.fetches += 1
        results = await asyncio.gather(*(self._fetch_one(url) for url in self.urls), return_exceptions=True)
        merged: dict[str, Any] = {}
        for result in results:
            if isinstance(result, dict):
                merged.update(result)
        if merged:
            self._keys, self._fetched_at, self._failed = merged, self.clock(), False
        else:
            self._failed = True  # the old keys, if any, are kept: see key_for

    async def _fetch_one(self, url: str) -> dict[str, Any]:
        try:
            body = await asyncio.wait_for(self.fetch(url, self.timeout), self.timeout)
        except TimeoutError:
            raise JwksError("the key set did not answer in time") from None
        return await asyncio.to_thread(parse_jwks, body) if len(body) > 64 * 1024 else parse_jwks(body)


def signing_keys(urls: Sequence[str]) -> SigningKeys:
    """The running event loop's :class:`SigningKeys` for ``urls`` (one per worker loop)."""
    return loop_cache.get_or_build(("signing-keys", tuple(urls)), lambda: SigningKeys(urls))
