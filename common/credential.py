"""One async Azure credential per process (per event loop).

In Azure the app authenticates as its managed identity: a user-assigned one
when ``AZURE_CLIENT_ID`` is set, else the system-assigned one. Elsewhere
(a developer's machine, CI) ``DefaultAzureCredential`` tries the environment,
the Azure CLI and the other developer sign-ins, never an interactive prompt::

    from common.credential import get_credential

    client = SecretClient(vault_url, credential=get_credential())

Built lazily on first use; closed with the clients by
``common.clients.close_all()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common import loop_cache, settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = ["get_credential"]

_KEY = ("credential",)


def get_credential() -> AsyncTokenCredential:
    """The shared async credential, built on first use."""
    return loop_cache.get_or_build(_KEY, _build_credential)


def _build_credential() -> AsyncTokenCredential:
    identity = settings.identity_settings()
    if identity.in_azure:
        from azure.identity.aio import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=identity.client_id)
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(
        managed_identity_client_id=identity.client_id,
        exclude_interactive_browser_credential=True,
    )
