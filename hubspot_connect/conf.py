"""Every setting of the app, read from ``django.conf.settings`` on each access.

Nothing is cached or written back, so ``override_settings`` works everywhere.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_AUTHORIZE_URL = "https://app.hubspot.com/oauth/authorize"
DEFAULT_API_BASE_URL = "https://api.hubapi.com"
DEFAULT_OAUTH_API_VERSION = "2026-03"
DEFAULT_PERMISSION = "hubspot_connect.add_hubspotconnection"
# HubSpot's limits for OAuth apps: per installed account, and for CRM search endpoints.
DEFAULT_RATE_LIMIT = (110, 10)
DEFAULT_SEARCH_RATE_LIMIT = (5, 1)


def rate_limit_value(value: Any) -> tuple[int, float] | None:
    """``(requests, seconds)`` from a setting's value; ``None`` for ``None``.

    Raises ``ValueError`` for anything else than two positive numbers (an integer count).
    """
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError("not a (requests, seconds) pair")
    requests, seconds = value
    for number in (requests, seconds):
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ValueError("not two numbers")
        if not math.isfinite(number) or number <= 0:
            raise ValueError("not two positive numbers")
    if not float(requests).is_integer():
        raise ValueError("the number of requests is not a whole number")
    return int(requests), float(seconds)


def _rate_limit(name: str, default: tuple[int, int]) -> tuple[int, float] | None:
    try:
        return rate_limit_value(getattr(settings, name, default))
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be None or (requests, seconds), two positive numbers; "
            "see `manage.py check`."
        ) from None


def _scopes(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (set, frozenset)):
        return sorted(str(scope) for scope in value)
    if isinstance(value, (list, tuple)):
        return [str(scope) for scope in value]
    return []


class Settings:
    @property
    def CLIENT_ID(self) -> str:
        return str(getattr(settings, "HUBSPOT_CLIENT_ID", "") or "")

    @property
    def CLIENT_SECRET(self) -> str:
        return str(getattr(settings, "HUBSPOT_CLIENT_SECRET", "") or "")

    @property
    def SCOPES(self) -> list[str]:
        return _scopes(getattr(settings, "HUBSPOT_SCOPES", []))

    @property
    def OPTIONAL_SCOPES(self) -> list[str]:
        return _scopes(getattr(settings, "HUBSPOT_OPTIONAL_SCOPES", []))

    @property
    def REDIRECT_URI(self) -> str | None:
        """``None`` means: build it from the callback URL of the request."""
        value = getattr(settings, "HUBSPOT_REDIRECT_URI", None)
        return str(value) if value else None

    @property
    def AUTHORIZE_URL(self) -> str:
        return str(getattr(settings, "HUBSPOT_AUTHORIZE_URL", DEFAULT_AUTHORIZE_URL))

    @property
    def API_BASE_URL(self) -> str:
        url = str(getattr(settings, "HUBSPOT_API_BASE_URL", DEFAULT_API_BASE_URL))
        return url.rstrip("/")

    @property
    def OAUTH_API_VERSION(self) -> str:
        return str(getattr(settings, "HUBSPOT_OAUTH_API_VERSION", DEFAULT_OAUTH_API_VERSION))

    @property
    def HTTP_TIMEOUT(self) -> float:
        return float(getattr(settings, "HUBSPOT_HTTP_TIMEOUT", 10))

    @property
    def STATE_MAX_AGE(self) -> int:
        return int(getattr(settings, "HUBSPOT_STATE_MAX_AGE", 600))

    @property
    def REFRESH_MARGIN(self) -> int:
        return int(getattr(settings, "HUBSPOT_REFRESH_MARGIN", 300))

    @property
    def REFRESH_LEASE(self) -> int:
        """Seconds a worker may hold a connection while it refreshes it.

        Longer than one HTTP call can take, so a live worker never loses it;
        short enough that a crashed worker's lease frees the row soon.
        """
        default = max(60, int(self.HTTP_TIMEOUT * 3))
        return int(getattr(settings, "HUBSPOT_REFRESH_LEASE", default))

    @property
    def CONNECT_PERMISSION(self) -> str | None:
        """Dotted path to ``callable(request) -> bool``; ``None`` means the model permission."""
        value = getattr(settings, "HUBSPOT_CONNECT_PERMISSION", None)
        return str(value) if value else None

    @property
    def CONNECT_ON_GET(self) -> bool:
        """Start the flow on GET too; by default a GET shows a confirmation form (POST)."""
        # Only a real True turns it on: a string such as "False" must not (check E017).
        return getattr(settings, "HUBSPOT_CONNECT_ON_GET", False) is True

    @property
    def SUCCESS_URL(self) -> str:
        """Where the callback sends the user when the flow carried no ``next``."""
        return str(getattr(settings, "HUBSPOT_SUCCESS_URL", "/"))

    @property
    def RATE_LIMIT(self) -> tuple[int, float] | None:
        """(requests, seconds) per portal, shared through the cache; ``None``: no budget."""
        return _rate_limit("HUBSPOT_RATE_LIMIT", DEFAULT_RATE_LIMIT)

    @property
    def SEARCH_RATE_LIMIT(self) -> tuple[int, float] | None:
        """The same for CRM search endpoints (``POST /crm/.../search``)."""
        return _rate_limit("HUBSPOT_SEARCH_RATE_LIMIT", DEFAULT_SEARCH_RATE_LIMIT)

    @property
    def RATE_LIMIT_CACHE(self) -> str:
        """The ``CACHES`` alias that holds the shared request budget."""
        return str(getattr(settings, "HUBSPOT_RATE_LIMIT_CACHE", "default"))

    @property
    def EVENT_RETENTION(self) -> int:
        """Days of connection history (events, hourly refresh counts) that pruning keeps."""
        return int(getattr(settings, "HUBSPOT_EVENT_RETENTION", 90))

    @property
    def FAKE_STORE(self) -> str | None:
        """JSON file for ``hubspot_connect.fake_server``'s state (development); None: memory."""
        value = getattr(settings, "HUBSPOT_FAKE_STORE", None)
        return str(value) if value else None

    @property
    def ENCRYPTION_KEYS(self) -> list[str | bytes]:
        keys = getattr(settings, "FIELD_ENCRYPTION_KEY", None)
        if not keys:
            return []
        if isinstance(keys, (str, bytes)):
            return [keys]
        return list(keys)


app_settings = Settings()
