"""Refresh one connection's tokens under the lease, durably.

Claim the row (:mod:`hubspot_connect.lease`), call HubSpot with no transaction open,
store what HubSpot answered while the lease is still ours. The claim and the writes run
outside the caller's transaction (:mod:`hubspot_connect.db`), so a caller that rolls back
never loses tokens HubSpot issued.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from . import events, lease
from .client import HubSpotOAuthClient, get_client
from .conf import app_settings
from .db import Durable, RetryOnCaller, write_alias
from .exceptions import HubSpotOAuthError, HubSpotUnavailable, InvalidClient, InvalidGrant
from .models import NEEDS_REAUTH, HubSpotConnection
from .signals import hubspot_needs_reauth, hubspot_tokens_refreshed

logger = logging.getLogger("hubspot_connect")


def _claim_or_reread(
    connection: HubSpotConnection, *, force: bool, within: timedelta, using: str
) -> datetime | None:
    """Claim the row; if that fails, re-read it and claim again only if our copy was stale."""
    seen_refresh = connection.last_refreshed_at
    claimed = lease.claim(connection, using=using)
    if claimed is not None:
        return claimed
    lease.reread(connection, using=using)
    connection.ensure_usable()
    now = timezone.now()
    if lease.held(connection):
        return None  # another worker is refreshing it right now
    if connection.last_refreshed_at != seen_refresh:
        return None  # refreshed elsewhere since we read it
    if not force and not connection.expires_within(within, now):
        return None  # reconnected meanwhile, with fresh tokens
    # Our copy was only out of date (another change, or a lease that ran out): retry once.
    return lease.claim(connection, using=using)


def _store(
    durable: Durable,
    connection: HubSpotConnection,
    held: datetime,
    outcome: events.Outcome,
    **values: Any,
) -> bool:
    """Store under the lease; if the lease ran out meanwhile, load what the new holder stored.

    The outcome's history (its hourly count, an event) is written in the same durable block.
    """
    with durable.block():
        if lease.store(connection, held, using=durable.alias, **values):
            outcome.record(connection, using=durable.alias)
            return True
        lease.reread(connection, using=durable.alias)
    logger.warning(
        "Portal %s: the refresh lease ran out during the call to HubSpot; keeping what "
        "the worker that took over stored (raise HUBSPOT_REFRESH_LEASE if this recurs).",
        connection.portal_id,
    )
    return False


def refresh_connection(
    connection: HubSpotConnection,
    force: bool = False,
    *,
    within: timedelta | None = None,
    client: HubSpotOAuthClient | None = None,
    tally: events.RefreshTally | None = None,
) -> bool:
    """Refresh ``connection``'s tokens if due (or ``force``), under the refresh lease.

    Returns ``True`` when this call stored new tokens and ``False`` when nothing was
    due or another worker refreshed (or is refreshing) the row; ``connection`` then
    holds the row as stored. Raises :class:`InvalidGrant` after marking the row
    ``needs_reauth``, and :class:`HubSpotUnavailable` or :class:`HubSpotOAuthError`
    after recording the failure; the stored tokens are untouched in both cases.
    :class:`InvalidClient` (HubSpot refused the app's own credentials) leaves the row as
    it was. The outcome is counted per hour, in ``tally`` (a batch run) or at once.
    """
    connection.ensure_usable()
    if within is None:
        within = timedelta(seconds=app_settings.REFRESH_MARGIN)
    if not force and not connection.expires_within(within):
        return False  # expiry only ever moves later, so the stored row is not due either
    durable = Durable(write_alias(connection))
    try:
        with durable.block(fallback=True):
            held = _claim_or_reread(connection, force=force, within=within, using=durable.alias)
    except RetryOnCaller:
        held = _claim_or_reread(connection, force=force, within=within, using=durable.alias)
    if held is None:
        return False
    client = client or get_client()
    sent_at = timezone.now()
    try:
        if not connection.refresh_token:
            raise InvalidGrant(
                "No refresh token is stored for this portal.", error="invalid_grant"
            )
        tokens = client.refresh(connection.refresh_token)
    except InvalidClient:
        # Nothing is wrong with this portal: its row keeps its status and counters.
        with durable.block():
            lease.store(connection, held, using=durable.alias, lease_expires_at=None)
        raise
    except (HubSpotUnavailable, HubSpotOAuthError) as exc:
        reauth = isinstance(exc, InvalidGrant)
        failed = events.refresh_failed(connection, exc, reauth=reauth, tally=tally)
        now = timezone.now()
        failure: dict[str, Any] = {
            "lease_expires_at": None,
            "refresh_failures": connection.refresh_failures + 1,
            "failing_since": connection.failing_since or now,
            "last_error": str(exc),
            "last_error_at": now,
        }
        if reauth:
            failure["status"] = NEEDS_REAUTH
        if not _store(durable, connection, held, failed, **failure):
            return False
        if reauth:
            logger.warning("Portal %s needs re-authorization: %s", connection.portal_id, exc)
            hubspot_needs_reauth.send(sender=HubSpotConnection, connection=connection, error=exc)
        else:
            logger.warning("Refreshing portal %s failed: %s", connection.portal_id, exc)
        raise
    except BaseException:
        with durable.block():
            lease.store(connection, held, using=durable.alias, lease_expires_at=None)
        raise
    values: dict[str, Any] = {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": tokens.token_type,
        "expires_at": sent_at + timedelta(seconds=tokens.expires_in),
        "last_refreshed_at": timezone.now(),
        "refresh_failures": 0,
        "refresh_count": connection.refresh_count + 1,  # our copy is the row: we hold the lease
        "failing_since": None,
        "last_error": "",
        "lease_expires_at": None,
    }
    if tokens.scopes is not None:
        values["scopes"] = list(tokens.scopes)
    done = events.refreshed(connection, tokens.scopes, tally=tally)
    if not _store(durable, connection, held, done, **values):
        return False
    logger.debug("Portal %s refreshed", connection.portal_id)
    hubspot_tokens_refreshed.send(sender=HubSpotConnection, connection=connection)
    return True
