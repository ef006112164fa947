"""The app's errors. No message here ever contains a token, secret or code."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist


class HubSpotConnectError(Exception):
    """Base class of every error this app raises on purpose."""


class HubSpotOAuthError(HubSpotConnectError):
    """HubSpot refused an OAuth request (a 4xx answer)."""

    def __init__(
        self,
        message: str,
        *,
        error: str = "",
        description: str = "",
        status: str = "",
        category: str = "",
        correlation_id: str = "",
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.description = description
        self.status = status
        self.category = category
        self.correlation_id = correlation_id
        self.http_status = http_status


class InvalidGrant(HubSpotOAuthError):
    """The code or refresh token is unknown, used, expired or revoked."""


class InvalidClient(HubSpotOAuthError):
    """HubSpot does not accept HUBSPOT_CLIENT_ID / HUBSPOT_CLIENT_SECRET."""


class HubSpotUnavailable(HubSpotConnectError):
    """HubSpot could not be reached or answered 5xx, 429 or an unreadable body."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.http_status = http_status


class HubSpotRateLimited(HubSpotUnavailable):
    """A rate limit that is not waited out: HubSpot's ``DAILY`` limit, or a wait longer
    than the caller allowed (``max_wait``). ``policy`` is HubSpot's ``policyName``
    (``DAILY``, ``SECONDLY``, ``TEN_SECONDLY_ROLLING``); ``retry_after`` is in seconds."""

    def __init__(
        self,
        message: str,
        *,
        policy: str = "",
        retry_after: float | None = None,
        http_status: int | None = 429,
    ) -> None:
        super().__init__(message, retry_after=retry_after, http_status=http_status)
        self.policy = policy


class StateError(HubSpotConnectError):
    """The OAuth ``state`` of a callback is missing, unknown, used or expired."""


class TokenDecryptionError(HubSpotConnectError):
    """A stored token cannot be decrypted with FIELD_ENCRYPTION_KEY."""


class PortalNotConnected(HubSpotConnectError):
    """No usable connection exists for the portal."""

    def __init__(self, message: str, *, portal_id: int | None = None) -> None:
        super().__init__(message)
        self.portal_id = portal_id


class UnknownPortal(PortalNotConnected, ObjectDoesNotExist):
    """No connection was ever made for the portal (also an ``ObjectDoesNotExist``)."""


class PortalDisconnected(PortalNotConnected):
    """The portal was disconnected; connect it again to use it."""


class NeedsReauth(PortalNotConnected):
    """HubSpot rejected the refresh token; a user must reconnect the portal."""
