"""A valid access token for a portal: read it, refresh it when due, or wait for the worker
that is refreshing it. ``get_access_token`` and its async twin ``aget_access_token``.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from asgiref.sync import sync_to_async

from . import lease
from .conf import app_settings
from .db import Durable, write_alias
from .exceptions import (
    HubSpotOAuthError,
    HubSpotUnavailable,
    InvalidGrant,
    NeedsReauth,
    UnknownPortal,
)
from .models import HubSpotConnection
from .refresh import refresh_connection

logger = logging.getLogger("hubspot_connect")

PortalRef = int | str | HubSpotConnection


def load_connection(portal: PortalRef) -> HubSpotConnection:
    """The connection of a portal id (or the connection itself), else :class:`UnknownPortal`."""
    if isinstance(portal, HubSpotConnection):
        return portal
    try:
        portal_id = int(portal)
    except (TypeError, ValueError):
        # The value is not echoed: it could be a token passed by mistake.
        raise UnknownPortal("That is not a HubSpot portal id (an integer).") from None
    try:
        return HubSpotConnection.objects.get(portal_id=portal_id)
    except HubSpotConnection.DoesNotExist:
        raise UnknownPortal(f"Portal {portal_id} is not connected.", portal_id=portal_id) from None


def _fresh(connection: HubSpotConnection, margin: timedelta) -> bool:
    return bool(connection.access_token) and not connection.expires_within(margin)


def _stored_token(connection: HubSpotConnection, why: str) -> str | None:
    if not connection.access_token or connection.is_expired():
        return None
    logger.warning(
        "Portal %s: %s; using the stored token until it expires at %s.",
        connection.portal_id,
        why,
        connection.expires_at,
    )
    return connection.access_token


def refresh_or_wait(connection: HubSpotConnection, margin: timedelta, *, force: bool) -> str:
    """Refresh, or wait (bounded, short sleeps) for the worker that holds the lease."""
    seen_refresh, seen_error = connection.last_refreshed_at, connection.last_error_at
    # Waiting longer than a lease is pointless (it would be ours to take by then), and a
    # web request should not hang on a dead worker for more than about one HTTP call.
    wait = min(app_settings.REFRESH_LEASE + 1, app_settings.HTTP_TIMEOUT + 5)
    deadline = time.monotonic() + wait
    delay = 0.02
    waiting = False
    durable: Durable | None = None
    while True:
        if waiting:  # one query per poll; claim only once the lease is free again
            durable = durable or Durable(write_alias(connection))
            with durable.block():  # a fresh read, whatever the caller's transaction saw
                lease.reread(connection, using=durable.alias)
            connection.ensure_usable()
        else:
            try:
                if refresh_connection(connection, force=force, within=margin):
                    return connection.access_token
            except InvalidGrant as exc:
                raise NeedsReauth(
                    f"Portal {connection.portal_id} needs to be reconnected: {exc}",
                    portal_id=connection.portal_id,
                ) from None
            except (HubSpotUnavailable, HubSpotOAuthError):
                token = _stored_token(connection, "refreshing failed")
                if token is None:
                    raise
                return token
        if connection.last_refreshed_at != seen_refresh and connection.access_token:
            return connection.access_token  # another worker stored new tokens
        if not force and _fresh(connection, margin):
            return connection.access_token
        if connection.last_error_at != seen_error:
            token = _stored_token(connection, "another worker failed to refresh")
            if token is None:
                raise HubSpotUnavailable(
                    f"Portal {connection.portal_id}: refreshing failed (see last_error) and "
                    "the stored access token has expired."
                )
            return token
        if time.monotonic() >= deadline:
            token = _stored_token(connection, "another worker is still refreshing")
            if token is None:
                raise HubSpotUnavailable(
                    f"Portal {connection.portal_id}: timed out waiting for another worker "
                    "to refresh the token."
                )
            return token
        waiting = lease.held(connection)
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def get_access_token(portal: PortalRef) -> str:
    """A valid access token for ``portal`` (a portal id or a ``HubSpotConnection``).

    One query and no HTTP while the stored token has more than HUBSPOT_REFRESH_MARGIN
    left (none when given a connection); otherwise it refreshes, or waits for the
    worker that is refreshing. While HubSpot is unavailable the stored token is
    returned until it expires, then :class:`HubSpotUnavailable` is raised.
    """
    connection = load_connection(portal)
    connection.ensure_usable()
    margin = timedelta(seconds=app_settings.REFRESH_MARGIN)
    if _fresh(connection, margin):
        return connection.access_token
    return refresh_or_wait(connection, margin, force=not connection.access_token)


async def aget_access_token(portal: PortalRef) -> str:
    """:func:`get_access_token` for ``async def`` code: same semantics, never blocks the loop.

    The work runs in Django's thread for database access (``sync_to_async`` with
    ``thread_sensitive=True``), as the async ORM does.
    """
    return await sync_to_async(get_access_token, thread_sensitive=True)(portal)
