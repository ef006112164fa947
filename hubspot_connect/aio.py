"""``async_api_session()``: call HubSpot's APIs from ``async def`` code, as one portal.

An ``httpx.AsyncClient`` with what :func:`~hubspot_connect.session.api_session` does:
relative URLs below HUBSPOT_API_BASE_URL, ``Authorization: Bearer …`` only to HubSpot's
host, the default timeout, a place in the portal's shared request budget before each
request, and the same retries. Nothing blocks the event loop: the database work (the
token) runs in Django's thread for it (``sync_to_async``), the budget uses the cache's
async API, and waits are ``asyncio.sleep``. The decisions are the sync session's
(:class:`~hubspot_connect.retries.Retries`, :class:`~hubspot_connect.ratelimit.Budget`,
:func:`~hubspot_connect.session.token_after_401`); only the loop that applies them is
written twice, once with ``await``.

Needs the ``async`` extra: ``pip install 'django-hubspot-connect[async]'`` (httpx)::

    async with async_api_session(portal_id) as session:
        response = await session.get("/crm/objects/2026-03/contacts")
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured

try:
    import httpx
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImproperlyConfigured(
        "hubspot_connect.aio needs httpx: pip install 'django-hubspot-connect[async]'"
    ) from exc

from .access import PortalRef, aget_access_token, load_connection
from .conf import app_settings
from .models import HubSpotConnection
from .ratelimit import Budget, is_search
from .retries import BACKOFF_BASE, DEFAULT_MAX_WAIT, RETURN, Retries
from .sensitive import secret
from .session import token_after_401
from .transport import USER_AGENT, api_path

__all__ = ["AsyncHubSpotSession", "async_api_session"]

logger = logging.getLogger("hubspot_connect")

#: The key of a request's ``extensions`` that carries this session's options.
OPTIONS = "hubspot_connect"


class AsyncHubSpotSession(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` for HubSpot's APIs on behalf of one portal.

    Per request, ``await session.request(method, url, retry=True, max_wait=5, …)`` (or
    ``extensions={"hubspot_connect": {"retry": True}}`` on any method) lets a POST or
    PATCH be sent again after a 5xx or network error, and overrides ``max_wait``.
    """

    #: Seconds before the first retry after a 5xx or network error (see HubSpotSession).
    backoff = BACKOFF_BASE

    def __init__(
        self,
        portal: PortalRef,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        budget: Budget | None = None,
        **kwargs: Any,
    ) -> None:
        base_url = app_settings.API_BASE_URL
        kwargs.setdefault("timeout", app_settings.HTTP_TIMEOUT)
        super().__init__(base_url=base_url, **kwargs)
        self._api_base = base_url
        self.headers["User-Agent"] = USER_AGENT
        self.portal = portal
        self.connection = portal if isinstance(portal, HubSpotConnection) else None
        self.max_wait = max_wait
        self.budget = budget or Budget.from_settings()

    def hubspot_path(self, url: httpx.URL) -> str | None:
        """The path below the API base URL if ``url`` goes to HubSpot, else ``None``."""
        return api_path(str(url), self._api_base)

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        retry: bool | None = None,
        max_wait: float | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        options = {"retry": retry, "max_wait": max_wait}
        extensions = dict(kwargs.pop("extensions", None) or {})
        extensions[OPTIONS] = {**options, **extensions.get(OPTIONS, {})}
        return await super().request(method, url, extensions=extensions, **kwargs)

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        path = self.hubspot_path(request.url)
        if path is None:
            return await super().send(request, **kwargs)
        options = request.extensions.get(OPTIONS) or {}
        wait = options.get("max_wait")
        retries = Retries(
            request.method,
            f"{request.method} {path}",
            max_wait=self.max_wait if wait is None else wait,
            retry=options.get("retry"),
            backoff=self.backoff,
        )
        connection = await self._connection()
        token = await aget_access_token(connection)
        portal_id = connection.portal_id
        search = is_search(request.method, path)
        while True:
            await self.budget.aacquire(
                portal_id, search=search, deadline=retries.deadline, sleep=asyncio.sleep
            )
            request.headers["Authorization"] = secret(f"Bearer {token}")
            try:
                response = await self._send(request, **kwargs)
            except (httpx.TimeoutException, httpx.NetworkError) as exc:
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
                await asyncio.sleep(delay)
                continue
            status = response.status_code
            body = await response.aread() if status == 429 else b""
            action = retries.after_status(status, response.headers, body)
            if action is RETURN:
                return response
            await response.aclose()
            if action.refresh:
                logger.info("Portal %s: HubSpot answered 401; refreshing once", portal_id)
                token = await sync_to_async(token_after_401, thread_sensitive=True)(
                    connection, token
                )
                continue
            if action.policy:
                await self.budget.ablock(portal_id, action.policy, action.delay)
            logger.info(
                "Portal %s: %s answered %s; retrying in %.1f s",
                portal_id,
                retries.what,
                status,
                action.delay,
            )
            await asyncio.sleep(action.delay)

    async def _send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return await super().send(request, **kwargs)
        except httpx.HTTPError as exc:
            # As in the sync session: the frames below hold the Authorization header.
            raise exc.with_traceback(None) from exc.__cause__

    async def _connection(self) -> HubSpotConnection:
        if self.connection is None:
            connection = await sync_to_async(load_connection, thread_sensitive=True)(self.portal)
            connection.ensure_usable()
            self.connection = connection
        return self.connection


def async_api_session(
    portal: PortalRef, *, max_wait: float = DEFAULT_MAX_WAIT, **kwargs: Any
) -> AsyncHubSpotSession:
    """An ``httpx.AsyncClient`` that calls HubSpot's APIs as ``portal`` (see the module).

    It reads the portal's connection on its first request (an unknown, disconnected or
    needs-re-auth portal raises there); ``kwargs`` go to ``httpx.AsyncClient``.
    """
    return AsyncHubSpotSession(portal, max_wait=max_wait, **kwargs)
