"""``api_session()``: a ``requests.Session`` that calls HubSpot's APIs as one portal."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from .access import PortalRef, get_access_token, load_connection, refresh_or_wait
from .conf import app_settings
from .models import HubSpotConnection
from .sensitive import secret
from .transport import USER_AGENT

logger = logging.getLogger("hubspot_connect")


class HubSpotSession(requests.Session):
    """A ``requests.Session`` for HubSpot's APIs on behalf of one portal.

    Relative URLs are joined to HUBSPOT_API_BASE_URL; requests to that host carry
    ``Authorization: Bearer …`` (never requests to any other host, redirects
    included); every request has the default timeout; a 401 refreshes the token once
    and retries once.
    """

    def __init__(self, connection: HubSpotConnection) -> None:
        super().__init__()
        self.connection = connection
        self.base_url = app_settings.API_BASE_URL
        self.timeout = app_settings.HTTP_TIMEOUT
        self.headers["User-Agent"] = USER_AGENT

    def _is_hubspot(self, url: str) -> bool:
        base, target = urlsplit(self.base_url), urlsplit(url)
        return (target.scheme, target.netloc) == (base.scheme, base.netloc)

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        url = url.decode() if isinstance(url, bytes) else url
        if not urlsplit(url).scheme:
            url = urljoin(self.base_url + "/", url.lstrip("/"))
        kwargs.setdefault("timeout", self.timeout)
        if not self._is_hubspot(url):
            return super().request(method, url, *args, **kwargs)
        headers: dict[str, str] = dict(kwargs.pop("headers", None) or {})
        headers["Authorization"] = secret(f"Bearer {get_access_token(self.connection)}")
        kwargs["headers"] = headers
        response = self._send(method, url, *args, **kwargs)
        if response.status_code != 401:
            return response
        logger.info("Portal %s: HubSpot answered 401; refreshing once", self.connection.portal_id)
        response.close()
        margin = timedelta(seconds=app_settings.REFRESH_MARGIN)
        token = refresh_or_wait(self.connection, margin, force=True)
        headers["Authorization"] = secret(f"Bearer {token}")
        return self._send(method, url, *args, **kwargs)

    def _send(self, method: str | bytes, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            # The frames below this one (requests', urllib3's, http.client's) hold the
            # Authorization header as plain text and bytes: drop them from the traceback
            # that error reports print. The exception itself is the one requests raised.
            raise exc.with_traceback(None) from exc.__cause__


def api_session(portal: PortalRef) -> HubSpotSession:
    """A ``requests.Session`` that calls HubSpot's APIs as ``portal``."""
    connection = load_connection(portal)
    connection.ensure_usable()
    return HubSpotSession(connection)
