"""django-hubspot-connect: connect HubSpot portals to a Django site over OAuth 2.0.

The public API is importable from here; importing the package loads nothing else (the
names below are imported on first use), so it works before Django's app registry is ready::

    from hubspot_connect import HubSpotConnection, api_session, get_access_token
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "get_access_token": "access",
    "aget_access_token": "access",
    "api_session": "session",
    "HubSpotSession": "session",
    "hubspot_client": "sdk",
    "refresh_expiring_tokens": "batch",
    "RefreshSummary": "batch",
    "HubSpotConnection": "models",
    "HubSpotConnectionEvent": "models",
    "HubSpotConnectError": "exceptions",
    "HubSpotOAuthError": "exceptions",
    "InvalidGrant": "exceptions",
    "InvalidClient": "exceptions",
    "HubSpotUnavailable": "exceptions",
    "HubSpotRateLimited": "exceptions",
    "StateError": "exceptions",
    "TokenDecryptionError": "exceptions",
    "PortalNotConnected": "exceptions",
    "UnknownPortal": "exceptions",
    "PortalDisconnected": "exceptions",
    "NeedsReauth": "exceptions",
}

__all__ = [
    "HubSpotConnectError",
    "HubSpotConnection",
    "HubSpotConnectionEvent",
    "HubSpotOAuthError",
    "HubSpotRateLimited",
    "HubSpotSession",
    "HubSpotUnavailable",
    "InvalidClient",
    "InvalidGrant",
    "NeedsReauth",
    "PortalDisconnected",
    "PortalNotConnected",
    "RefreshSummary",
    "StateError",
    "TokenDecryptionError",
    "UnknownPortal",
    "__version__",
    "aget_access_token",
    "api_session",
    "get_access_token",
    "hubspot_client",
    "refresh_expiring_tokens",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from .access import aget_access_token, get_access_token
    from .batch import RefreshSummary, refresh_expiring_tokens
    from .exceptions import (
        HubSpotConnectError,
        HubSpotOAuthError,
        HubSpotRateLimited,
        HubSpotUnavailable,
        InvalidClient,
        InvalidGrant,
        NeedsReauth,
        PortalDisconnected,
        PortalNotConnected,
        StateError,
        TokenDecryptionError,
        UnknownPortal,
    )
    from .models import HubSpotConnection, HubSpotConnectionEvent
    from .sdk import hubspot_client
    from .session import HubSpotSession, api_session
