"""Connecting a portal (trade an authorization code for tokens) and disconnecting it.

What HubSpot answered is stored outside the caller's transaction (see
:mod:`hubspot_connect.db`): an authorization code is single use, so tokens lost to a
rollback could only be had again by asking the user to connect once more.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import requests
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils import timezone

from . import events
from .account import fetch_account_details, uninstall_app
from .client import HubSpotOAuthClient, TokenInfo, TokenResponse, get_client
from .db import Durable, RetryOnCaller, write_alias
from .exceptions import HubSpotConnectError, HubSpotOAuthError, HubSpotUnavailable
from .models import ACTIVE, DISCONNECTED, EventKind, HubSpotConnection
from .signals import hubspot_connected, hubspot_disconnected

logger = logging.getLogger("hubspot_connect")

_HUBLET_PREFIX = re.compile(r"^([a-z]{2,4}\d{1,2})-")


def connect_portal(
    *,
    code: str,
    redirect_uri: str,
    user: AbstractBaseUser | AnonymousUser | None = None,
    request: HttpRequest | None = None,
    client: HubSpotOAuthClient | None = None,
) -> tuple[HubSpotConnection, bool]:
    """Exchange an authorization code and store the portal's tokens (create or update)."""
    client = client or get_client()
    sent_at = timezone.now()
    tokens = client.exchange_code(code, redirect_uri=redirect_uri)
    info: TokenInfo | None
    try:
        info = client.introspect(tokens.access_token)
    except HubSpotConnectError as exc:
        if tokens.hub_id is None:
            raise
        logger.warning("Portal %s connected, but introspection failed: %s", tokens.hub_id, exc)
        info = None
    portal_id = tokens.hub_id if tokens.hub_id is not None else (info and info.hub_id)
    if not portal_id:
        raise HubSpotUnavailable("HubSpot did not say which portal was connected.")
    values: dict[str, Any] = {
        "scopes": list(tokens.scopes or (info.scopes if info else ()) or []),
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": tokens.token_type,
        "expires_at": sent_at + timedelta(seconds=tokens.expires_in),
        "status": ACTIVE,
        "refresh_failures": 0,
        "failing_since": None,
        "last_error": "",
        "last_error_at": None,
        "lease_expires_at": None,
    }
    user_id = tokens.user_id if tokens.user_id is not None else (info and info.user_id)
    if user_id:
        values["hubspot_user_id"] = user_id
    hublet = (info.hublet if info else "") or _hublet_from(tokens)
    optional = {"hub_domain": info.hub_domain if info else "", "hublet": hublet}
    optional["hubspot_user_email"] = info.user if info else ""
    values.update({key: value for key, value in optional.items() if value})
    values.update(_account_fields(int(portal_id), tokens.access_token))
    if user is not None and user.is_authenticated:
        # The id, not the instance: the user may live on another database than our rows.
        values["connected_by_id"] = user.pk
    connection, created = _store_connection(int(portal_id), values, actor=user)
    logger.info("Portal %s %s", connection.portal_id, "connected" if created else "reconnected")
    hubspot_connected.send(
        sender=HubSpotConnection, connection=connection, request=request, created=created
    )
    return connection, created


def _store_connection(
    portal_id: int, values: dict[str, Any], *, actor: Any = None
) -> tuple[HubSpotConnection, bool]:
    alias = write_alias()
    durable = Durable(alias)
    rows = HubSpotConnection.objects.using(alias)

    def store() -> tuple[HubSpotConnection, bool]:
        # What the row was, for the history (a reconnect says what changed).
        before = rows.filter(portal_id=portal_id).values_list("scopes", "status").first()
        connection, created = rows.update_or_create(portal_id=portal_id, defaults=values)
        events.connected(connection, created=created, before=before, actor=actor, using=alias)
        return connection, created

    try:
        with durable.block(fallback=True):
            return store()
    except RetryOnCaller:
        return store()


def _account_fields(portal_id: int, access_token: str) -> dict[str, str]:
    """What GET /account-info/2026-03/details says (ui_domain, time_zone, …); a failure is
    logged and never fails the connection."""
    try:
        return fetch_account_details(portal_id, access_token).fields()
    except HubSpotConnectError as exc:
        reason = str(exc)
    except requests.RequestException as exc:
        reason = type(exc).__name__
    logger.warning(
        "Portal %s connected, but reading its account details failed: %s", portal_id, reason
    )
    return {}


def _hublet_from(tokens: TokenResponse) -> str:
    match = _HUBLET_PREFIX.match(tokens.refresh_token)
    return match.group(1) if match else ""


def disconnect_connection(
    connection: HubSpotConnection,
    *,
    revoke: bool = True,
    uninstall: bool = False,
    actor: Any = None,
) -> None:
    """Revoke at HubSpot (optionally), wipe both tokens, keep the row as ``disconnected``.

    ``actor``: the user who disconnected it, for the connection's history.

    If HubSpot cannot be reached the row is left as it was and :class:`HubSpotUnavailable`
    propagates, so the revocation can be retried. A token HubSpot no longer knows is
    simply wiped.

    ``uninstall=True`` first removes the app from the customer's HubSpot account
    (``DELETE /appinstalls/2026-03/external-install``), with the same failure rules.
    """
    uninstalled = False
    if uninstall and connection.refresh_token:
        uninstalled = uninstall_app(connection)
    if revoke and connection.refresh_token:
        try:
            get_client().revoke(connection.refresh_token)
        except HubSpotOAuthError as exc:
            logger.info("Portal %s: HubSpot refused the revocation: %s", connection.portal_id, exc)
    connection.access_token = ""
    connection.refresh_token = ""
    connection.expires_at = None
    connection.lease_expires_at = None
    connection.status = DISCONNECTED
    alias = write_alias(connection)
    with Durable(alias).block():
        connection.save(
            using=alias,
            update_fields=[
                "access_token",
                "refresh_token",
                "expires_at",
                "lease_expires_at",
                "status",
                "updated_at",
            ],
        )
        if uninstalled:
            events.record(EventKind.UNINSTALLED, connection, actor=actor, using=alias)
        events.record(EventKind.DISCONNECTED, connection, actor=actor, using=alias)
    logger.info("Portal %s disconnected", connection.portal_id)
    hubspot_disconnected.send(sender=HubSpotConnection, connection=connection)
