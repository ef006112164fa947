"""Calls about the portal's account itself: what HubSpot says about it when it connects,
and removing the app from it (``disconnect(uninstall=True)``)."""

from __future__ import annotations

import logging

import requests

from .exceptions import HubSpotUnavailable, PortalNotConnected
from .models import HubSpotConnection
from .retries import DEFAULT_MAX_WAIT
from .sensitive import secret
from .session import HubSpotSession
from .transport import json_object
from .wire import AccountDetails, account_details, oauth_error

logger = logging.getLogger("hubspot_connect")

ACCOUNT_DETAILS_PATH = "/account-info/2026-03/details"
UNINSTALL_PATH = "/appinstalls/2026-03/external-install"


class _NewTokenSession(HubSpotSession):
    """A session on a token HubSpot just issued and that is not stored yet: the shared
    budget and retries apply, but there is nothing to refresh on a 401."""

    def current_token(self) -> str:
        return self.connection.access_token

    def refreshed_token(self, rejected: str) -> str | None:
        return None


def fetch_account_details(
    portal_id: int, access_token: str, *, max_wait: float = 3.0
) -> AccountDetails:
    """``GET /account-info/2026-03/details`` with a new access token (a connect in progress).

    A user waits for the callback meanwhile, and the details are not essential: one
    attempt (a 429 is still waited out within ``max_wait``). Raises
    :class:`HubSpotConnectError` (or a ``requests`` error) if HubSpot does not answer 200
    with a JSON object.
    """
    holder = HubSpotConnection(portal_id=portal_id, access_token=secret(access_token))
    with _NewTokenSession(holder, max_wait=max_wait) as session:
        response = session.request(
            "GET", ACCOUNT_DETAILS_PATH, headers={"Accept": "application/json"}, retry=False
        )
        if response.status_code != 200:
            raise oauth_error(response, ACCOUNT_DETAILS_PATH, (access_token,), method="GET")
        body = json_object(response)
    if body is None:
        raise HubSpotUnavailable(
            f"HubSpot answered GET {ACCOUNT_DETAILS_PATH} with a body that is not a JSON object."
        )
    return account_details(body)


def uninstall_app(connection: HubSpotConnection, *, max_wait: float = DEFAULT_MAX_WAIT) -> bool:
    """Remove the app from the portal's HubSpot account: ``DELETE
    /appinstalls/2026-03/external-install`` as the portal (HubSpot emails the account's
    admins).

    Returns ``False`` when HubSpot no longer accepts the portal's tokens (401, 404, or
    the refresh token rejected: the app was already uninstalled). Raises
    :class:`HubSpotUnavailable` when HubSpot cannot be reached or answers 5xx or 429, and
    :class:`HubSpotOAuthError` when it refuses otherwise; nothing is changed then.
    """
    try:
        with HubSpotSession(connection, max_wait=max_wait) as session:
            response = session.delete(UNINSTALL_PATH)
    except PortalNotConnected:  # needs re-auth (or disconnected): HubSpot dropped the app
        logger.info(
            "Portal %s: HubSpot rejects its refresh token; not installed", connection.portal_id
        )
        return False
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise HubSpotUnavailable(
            f"Could not reach HubSpot to uninstall the app from portal {connection.portal_id} "
            f"({type(exc).__name__})."
        ) from None
    if response.status_code in (401, 404):
        logger.info(
            "Portal %s: HubSpot answered %s to the uninstall; the app is not installed there",
            connection.portal_id,
            response.status_code,
        )
        return False
    if response.status_code >= 300:
        raise oauth_error(response, UNINSTALL_PATH, (), method="DELETE")
    logger.info(
        "Portal %s: the app was uninstalled from the HubSpot account", connection.portal_id
    )
    return True
