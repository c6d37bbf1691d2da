"""Parsing app settings: one reader over one mapping, errors that name the setting.

App settings reach a Functions worker as environment variables. :class:`SettingsReader`
reads them from ``os.environ`` by default, or from any mapping a test passes::

    from common.setting_parsers import SettingsReader

    read = SettingsReader({"RETENTION_DAYS": "7"})
    read.integer("RETENTION_DAYS", 30, minimum=0)   # 7

A blank value counts as absent. A malformed value raises
:class:`~common.errors.ConfigurationError` naming the setting and showing a valid
example; a secret value (a connection string) is never echoed.

A reader may be restricted to the names a settings group declares (``allowed``), so a
group cannot read a setting that the list of every setting (``settings.setting_names``)
does not know of: that list is derived from the declarations, never kept by hand.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from common.errors import ConfigurationError

__all__ = ["SettingsReader", "https_url", "is_loopback_host"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_ENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/~]{0,259}$")


def is_loopback_host(host: str | None) -> bool:
    """True for localhost and loopback addresses, where emulators listen."""
    if not host:
        return False
    host = host.strip("[]").lower()
    return host == "localhost" or host.endswith(".localhost") or host == "::1" or host.startswith("127.")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


class SettingsReader:
    """Typed reads of app settings from ``values`` (default: ``os.environ``)."""

    def __init__(self, values: Mapping[str, str] | None = None, *, allowed: Collection[str] | None = None,
                 owner: str = "") -> None:
        self._values: Mapping[str, str] = os.environ if values is None else values
        self._allowed = allowed
        self._owner = owner

    def restricted(self, allowed: Collection[str], owner: str) -> SettingsReader:
        """The same values, readable only under the names ``owner`` declared."""
        return SettingsReader(self._values, allowed=allowed, owner=owner)

    def raw(self, name: str) -> str | None:
        """The value stripped of white space; None when absent or blank."""
        if self._allowed is not None and name not in self._allowed:
            raise LookupError(f"{self._owner} reads app setting {name!r} but does not declare it")
        value = self._values.get(name)
        if value is None:
            return None
        return value.strip() or None

    def required(self, name: str, example: str) -> str:
        value = self.raw(name)
        if value is None:
            raise ConfigurationError(name, f"is not set; set it to a value such as {example!r}.")
        return value

    def optional(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        bounds = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        if not re.fullmatch(r"[+-]?\d{1,18}", value):
            raise ConfigurationError(name, f"must be {bounds} (for example {default}); got {_shown(value)}.")
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            raise ConfigurationError(name, f"must be {bounds} (for example {default}); got {number}.")
        return number

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            parsed = float(value)
        except ValueError:
            parsed = float("nan")
        if not parsed >= minimum or parsed == float("inf"):
            raise ConfigurationError(
                name, f"must be a number >= {minimum:g} (for example {default:g}); got {_shown(value)}.")
        return parsed

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigurationError(name, f"must be true or false; got {_shown(value)}.")

    def entity_name(self, name: str, default: str | None, example: str) -> str:
        """A queue, container or database name (required when ``default`` is None)."""
        value = self.required(name, example) if default is None else self.optional(name, default)
        if not _ENTITY_NAME.fullmatch(value):
            raise ConfigurationError(
                name, f"must be a queue, container or database name such as {example!r}; got {_shown(value)}.")
        return value

    def url(self, name: str, example: str) -> str | None:
        """An absolute https URL (http for loopback hosts only), with a trailing slash; None when unset."""
        value = self.raw(name)
        return None if value is None else https_url(name, value, example)


def https_url(name: str, value: str, example: str) -> str:
    """``value`` as an absolute https URL (http only for loopback hosts), with a trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(name, f"must be an absolute URL such as {example!r}.")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(name, f"must use https (http is accepted for localhost only), such as {example!r}.")
    return value.rstrip("/") + "/"
