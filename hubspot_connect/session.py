"""``api_session()``: a ``requests.Session`` that calls HubSpot's APIs as one portal."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from .access import PortalRef, get_access_token, load_connection, refresh_or_wait
from .conf import app_settings
from .models import HubSpotConnection
from .ratelimit import Budget, is_search
from .retries import BACKOFF_BASE, DEFAULT_MAX_WAIT, RETURN, Retries
from .sensitive import secret
from .transport import USER_AGENT, api_path

logger = logging.getLogger("hubspot_connect")


class HubSpotSession(requests.Session):
    """A ``requests.Session`` for HubSpot's APIs on behalf of one portal.

    Relative URLs are joined to HUBSPOT_API_BASE_URL; requests to that host carry
    ``Authorization: Bearer …`` (never requests to any other host, redirects
    included) and every request has the default timeout. Each request to HubSpot first
    takes a place in the portal's shared request budget, and is retried as
    :mod:`hubspot_connect.retries` says, all waits within ``max_wait`` seconds.

    Two keyword arguments of every request method are the session's, not requests':
    ``retry=True`` lets a POST or PATCH be sent again after a 5xx or network error
    (``retry=False`` keeps any method from it), and ``max_wait`` overrides the session's
    for that request.
    """

    #: Seconds before the first retry after a 5xx or network error (then doubling, with
    #: jitter, up to 8 s).
    backoff = BACKOFF_BASE

    def __init__(
        self,
        connection: HubSpotConnection,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        budget: Budget | None = None,
    ) -> None:
        super().__init__()
        self.connection = connection
        self.max_wait = max_wait
        self.budget = budget or Budget.from_settings()
        self.base_url = app_settings.API_BASE_URL
        self.timeout = app_settings.HTTP_TIMEOUT
        self.headers["User-Agent"] = USER_AGENT

    def hubspot_path(self, url: str) -> str | None:
        """The path below the API base URL if ``url`` goes to HubSpot, else ``None``."""
        return api_path(url, self.base_url)

    def request(
        self,
        method: str | bytes,
        url: str | bytes,
        *args: Any,
        retry: bool | None = None,
        max_wait: float | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        url = url.decode() if isinstance(url, bytes) else url
        if not urlsplit(url).scheme:
            url = urljoin(self.base_url + "/", url.lstrip("/"))
        kwargs.setdefault("timeout", self.timeout)
        path = self.hubspot_path(url)
        if path is None:
            return super().request(method, url, *args, **kwargs)
        verb = (method.decode() if isinstance(method, bytes) else method).upper()
        wait = self.max_wait if max_wait is None else max_wait
        retries = Retries(verb, f"{verb} {path}", max_wait=wait, retry=retry, backoff=self.backoff)
        headers: dict[str, str] = dict(kwargs.pop("headers", None) or {})
        kwargs["headers"] = headers
        token = self.current_token()
        portal_id = self.connection.portal_id
        search = is_search(verb, path)
        while True:
            self.budget.acquire(portal_id, search=search, deadline=retries.deadline)
            headers["Authorization"] = secret(f"Bearer {token}")
            try:
                response = self._send(verb, url, *args, **kwargs)
            except (requests.Timeout, requests.ConnectionError) as exc:
                delay = retries.after_error()
                if delay is None:
                    raise
                logger.info(
                    "Portal %s: %s failed (%s); retrying in %.1f s",
                    portal_id,
                    retries.what,
                    type(exc).__name__,
                    delay,
                )
                time.sleep(delay)
                continue
            status = response.status_code
            body = response.content if status == 429 else b""
            action = retries.after_status(status, response.headers, body)
            if action is RETURN:
                return response
            if action.refresh:
                logger.info("Portal %s: HubSpot answered 401; refreshing once", portal_id)
                refreshed = self.refreshed_token(token)
                if refreshed is None:
                    return response
                response.close()
                token = refreshed
                continue
            response.close()
            if action.policy:
                self.budget.block(portal_id, action.policy, action.delay)
            logger.info(
                "Portal %s: %s answered %s; retrying in %.1f s",
                portal_id,
                retries.what,
                status,
                action.delay,
            )
            time.sleep(action.delay)

    def current_token(self) -> str:
        """The token for the next request: refreshed by expiry, or by the worker we wait for."""
        return get_access_token(self.connection)

    def refreshed_token(self, rejected: str) -> str | None:
        """A token to try after HubSpot rejected ``rejected`` (:func:`token_after_401`);
        ``None``: there is none, the 401 goes back to the caller."""
        return token_after_401(self.connection, rejected)

    def _send(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            # The frames below this one (requests', urllib3's, http.client's) hold the
            # Authorization header as plain text and bytes: drop them from the traceback
            # that error reports print. The exception itself is the one requests raised.
            raise exc.with_traceback(None) from exc.__cause__


def token_after_401(connection: HubSpotConnection, rejected: str) -> str:
    """The token to send after HubSpot answered 401 to ``rejected``: one refresh per token
    however many requests see the 401 at once.

    If another request on this connection object already replaced the token, that one;
    otherwise :func:`~hubspot_connect.access.refresh_or_wait` forces a refresh under the
    lease, whose claim only succeeds on a row unchanged since it was read: every other
    process or copy that saw the same 401 fails the claim and waits for the refreshed
    token instead of refreshing again.
    """
    current = connection.access_token
    if current and current != rejected:
        return current
    margin = timedelta(seconds=app_settings.REFRESH_MARGIN)
    return refresh_or_wait(connection, margin, force=True)


def api_session(portal: PortalRef, *, max_wait: float = DEFAULT_MAX_WAIT) -> HubSpotSession:
    """A ``requests.Session`` that calls HubSpot's APIs as ``portal``.

    ``max_wait``: the most seconds one request may spend waiting, for a place in the
    shared budget and between retries, before :class:`HubSpotRateLimited` is raised (or
    the last answer returned); each request may override it (``max_wait=``).
    """
    connection = load_connection(portal)
    connection.ensure_usable()
    return HubSpotSession(connection, max_wait=max_wait)
