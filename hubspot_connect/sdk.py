"""``hubspot_client(portal)``: HubSpot's official SDK (``hubspot-api-client``) as one portal.

The SDK takes an access token once and cannot refresh it. The client made here holds no
token at all: every request the SDK makes (its generated API classes and
``api_request``) is sent through :class:`~hubspot_connect.session.HubSpotSession`, which
looks the portal's token up per request (refreshing it by expiry, or waiting for the
worker that does), takes a place in the shared request budget, and retries as
:mod:`hubspot_connect.retries` says. A client made now still works hours later, after
its token expired and was refreshed elsewhere.

The hook is the SDK's own ``api_factory`` (each API class gets an ``ApiClient`` from it):
the ``ApiClient``'s connection pool is replaced by :class:`SessionPool`, which hands the
SDK's requests to the session and its answers back as ``urllib3`` responses.

Needs the ``sdk`` extra: ``pip install 'django-hubspot-connect[sdk]'``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any
from urllib.parse import urlencode

import urllib3
from django.core.exceptions import ImproperlyConfigured

try:
    from hubspot import HubSpot  # type: ignore[import-untyped]
    from hubspot.utils.requests.http_request_builder import (  # type: ignore[import-untyped]
        Request,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImproperlyConfigured(
        "hubspot_connect.sdk needs HubSpot's SDK (hubspot-api-client): "
        "pip install 'django-hubspot-connect[sdk]'"
    ) from exc

import requests

from .access import PortalRef, get_access_token, load_connection
from .retries import DEFAULT_MAX_WAIT
from .session import HubSpotSession
from .transport import USER_AGENT

__all__ = ["PortalHubSpot", "SessionPool", "hubspot_client"]

_URL_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
# requests has already decoded the body and knows its length: these would be wrong now.
_DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _timeout(value: Any) -> Any:
    """A ``requests`` timeout from the ``urllib3.Timeout`` the SDK builds (``None``: the
    session's default)."""
    if not isinstance(value, urllib3.Timeout):
        return value
    if isinstance(value.total, (int, float)):
        return value.total
    connect, read = value.connect_timeout, getattr(value, "_read", None)
    if isinstance(connect, (int, float)) and isinstance(read, (int, float)):
        return (connect, read)
    return None


class SessionPool:
    """Stands in for the ``urllib3.PoolManager`` of an SDK ``ApiClient``: sends through a
    :class:`HubSpotSession` and answers with ``urllib3.HTTPResponse`` objects."""

    def __init__(self, session: HubSpotSession) -> None:
        self.session = session

    def request(
        self,
        method: str,
        url: str,
        fields: Sequence[tuple[str, Any]] | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        encode_multipart: bool = True,
        preload_content: bool = True,
        timeout: Any = None,
        **_: Any,
    ) -> urllib3.HTTPResponse:
        method = method.upper()
        headers = dict(headers or {})
        if fields and method in _URL_METHODS:  # what urllib3 does with fields
            url += ("&" if "?" in url else "?") + urlencode(fields)
        elif fields is not None and method not in _URL_METHODS:
            if encode_multipart:
                body, headers["Content-Type"] = urllib3.encode_multipart_formdata(fields)
            else:
                body = urlencode(fields)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
        options: dict[str, Any] = {"data": body, "headers": headers}
        if (converted := _timeout(timeout)) is not None:
            options["timeout"] = converted
        response = self.session.request(method, url, **options)
        return urllib3.HTTPResponse(
            body=io.BytesIO(response.content),
            headers={
                name: value
                for name, value in response.headers.items()
                if name.lower() not in _DROPPED_HEADERS
            },
            status=response.status_code,
            reason=response.reason,
            preload_content=preload_content,
            decode_content=False,
        )

    def clear(self) -> None:
        """What ``PoolManager.clear()`` does: close the connections."""
        self.session.close()


class PortalHubSpot(HubSpot):  # type: ignore[misc]
    """A ``hubspot.HubSpot`` whose requests all go through ``session`` (see the module)."""

    def __init__(self, session: HubSpotSession, **config: Any) -> None:
        super().__init__(api_factory=self._api_factory, **config)
        self.session = session

    @property
    def access_token(self) -> str:
        """A valid access token of the portal right now (never a stored copy)."""
        return get_access_token(self.session.connection)

    def _api_factory(self, package: Any, api_name: str, config: dict[str, Any]) -> Any:
        # Each SDK Configuration sets the "urllib3" logger to WARNING, the site's logging
        # configuration notwithstanding (requests uses urllib3 too): put its level back.
        urllib3_logger = logging.getLogger("urllib3")
        level = urllib3_logger.level
        configuration = package.Configuration()
        urllib3_logger.setLevel(level)
        for key, value in config.items():
            if key not in ("access_token", "api_key", "retry"):
                setattr(configuration, key, value)
        configuration.host = self.session.base_url
        api_client = package.ApiClient(configuration=configuration)
        api_client.user_agent = (
            f"hubspot-api-client-python; {metadata.version('hubspot-api-client')} {USER_AGENT}"
        )
        api_client.rest_client.pool_manager = SessionPool(self.session)
        return getattr(package, api_name)(api_client=api_client)

    def api_request(self, options: dict[str, Any]) -> requests.Response:
        """The SDK's generic request (``client.api_request({"path": …})``), sent through
        the session."""
        config = {**self.config, "base_url": self.session.base_url}
        request = Request(config, options)
        return self.session.request(
            request.get_method(), request.get_url(), **request.get_options_for_sending()
        )


def hubspot_client(portal: PortalRef, *, max_wait: float = DEFAULT_MAX_WAIT) -> PortalHubSpot:
    """A ``hubspot.HubSpot`` client authenticated as ``portal`` for its whole life.

    ``client.crm.contacts.basic_api.get_page()`` and every other call of the SDK go
    through :func:`~hubspot_connect.session.api_session`'s budget, retries and token
    refresh; ``max_wait`` bounds each request's waiting, as there. Network errors reach
    the caller as ``requests`` exceptions, a limit that is not waited out as
    :class:`~hubspot_connect.exceptions.HubSpotRateLimited`.
    """
    connection = load_connection(portal)
    connection.ensure_usable()
    return PortalHubSpot(HubSpotSession(connection, max_wait=max_wait))
