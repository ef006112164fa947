"""HubSpotOAuthClient: the only code that talks HTTP to HubSpot's OAuth API.

It knows HubSpot's wire format (``/oauth/{version}/token``, ``/token/introspect``,
``/token/revoke``, form-encoded bodies) and nothing of Django models. Every secret
travels in a form body, never in a URL, and no secret reaches a log line or an
exception message.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from django.views.decorators.debug import sensitive_variables

from .conf import app_settings
from .exceptions import (
    HubSpotUnavailable,
)
from .sensitive import secret
from .transport import USER_AGENT, json_object, new_session, parse_retry_after
from .wire import TokenInfo, TokenResponse, oauth_error, token_info, token_response

__all__ = [
    "HubSpotOAuthClient",
    "TokenInfo",
    "TokenResponse",
    "close_client",
    "get_client",
    "parse_retry_after",
]

logger = logging.getLogger("hubspot_connect.client")


class HubSpotOAuthClient:
    """Talks to HubSpot's dated OAuth endpoints over one ``requests.Session``."""

    def __init__(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        authorize_url: str | None = None,
        api_base_url: str | None = None,
        api_version: str | None = None,
        timeout: float | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.client_id = app_settings.CLIENT_ID if client_id is None else client_id
        self._client_secret = secret(
            app_settings.CLIENT_SECRET if client_secret is None else client_secret
        )
        self.authorize_url = authorize_url or app_settings.AUTHORIZE_URL
        self.api_base_url = (api_base_url or app_settings.API_BASE_URL).rstrip("/")
        self.api_version = api_version or app_settings.OAUTH_API_VERSION
        self.timeout = app_settings.HTTP_TIMEOUT if timeout is None else timeout
        self.session = session or new_session(self.api_base_url)
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"

    def __repr__(self) -> str:
        return f"<HubSpotOAuthClient client_id={self.client_id!r} api={self.api_base_url!r}>"

    def close(self) -> None:
        self.session.close()

    # -- the five operations ---------------------------------------------------------

    def authorization_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        scopes: list[str] | None = None,
        optional_scopes: list[str] | None = None,
        portal_id: int | None = None,
    ) -> str:
        """The consent-screen URL to send the user's browser to.

        With ``portal_id`` the screen opens for that HubSpot account
        (``…/oauth/{portal_id}/authorize``); the user can still pick another one.
        """
        authorize_url = self.authorize_url
        if portal_id is not None:
            if isinstance(portal_id, bool) or not isinstance(portal_id, int) or portal_id <= 0:
                raise ValueError("portal_id must be a positive int.")
            parts = urlsplit(authorize_url)
            head, found, tail = parts.path.rpartition("/authorize")
            if found and tail in ("", "/"):  # insert before the final /authorize segment
                path = f"{head}/{portal_id}/authorize{tail}"
                authorize_url = parts._replace(path=path).geturl()
        scopes = app_settings.SCOPES if scopes is None else scopes
        optional = app_settings.OPTIONAL_SCOPES if optional_scopes is None else optional_scopes
        params = [
            ("client_id", self.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", " ".join(scopes)),
        ]
        if optional:
            params.append(("optional_scope", " ".join(optional)))
        params.append(("state", state))
        separator = "&" if urlsplit(authorize_url).query else "?"
        return authorize_url + separator + urlencode(params, quote_via=quote)

    @sensitive_variables()
    def exchange_code(self, code: str, *, redirect_uri: str) -> TokenResponse:
        """Trade an authorization code for tokens."""
        code = secret(code)
        body = self._post(
            "token",
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": self.client_id,
                "client_secret": self._client_secret,
            },
            secrets=(code,),
        )
        return token_response(body)

    @sensitive_variables()
    def refresh(self, refresh_token: str) -> TokenResponse:
        """Get a new access token (and possibly a new refresh token)."""
        refresh_token = secret(refresh_token)
        body = self._post(
            "token",
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.client_id,
                "client_secret": self._client_secret,
            },
            secrets=(refresh_token,),
        )
        # RFC 6749 section 6: an answer without a new refresh token keeps the old one valid.
        return token_response(body, current_refresh_token=refresh_token)

    def introspect(
        self,
        token: str,
        *,
        token_type_hint: str = "access_token",  # noqa: S107
    ) -> TokenInfo:
        """Metadata of a token: portal, domain, user, scopes, hublet."""
        token = secret(token)
        body = self._post(
            "token/introspect",
            {
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "token": token,
                "token_type_hint": token_type_hint,
            },
            secrets=(token,),
        )
        return token_info(body)

    def revoke(
        self,
        token: str,
        *,
        token_type_hint: str = "refresh_token",  # noqa: S107
    ) -> None:
        """Revoke a refresh token at HubSpot; the app's access for that portal ends."""
        token = secret(token)
        self._post(
            "token/revoke",
            {
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "token": token,
                "token_type_hint": token_type_hint,
            },
            secrets=(token,),
            expect_json=False,
        )

    # -- one path for every request ------------------------------------------------

    def endpoint(self, name: str) -> str:
        return f"{self.api_base_url}/oauth/{self.api_version}/{name}"

    @sensitive_variables()
    def _post(
        self,
        name: str,
        data: dict[str, str],
        *,
        secrets: tuple[str, ...],
        expect_json: bool = True,
    ) -> dict[str, Any]:
        url = self.endpoint(name)
        path = urlsplit(url).path
        secrets = (*secrets, self._client_secret)
        started = time.monotonic()
        try:
            # No redirects: a 307/308 would re-send the secrets in the body to another URL.
            response = self.session.post(
                url, data=data, timeout=self.timeout, allow_redirects=False
            )
        except requests.Timeout:
            logger.warning("POST %s: no answer within %s s", path, self.timeout)
            raise HubSpotUnavailable(
                f"HubSpot did not answer POST {path} within {self.timeout:g} s."
            ) from None
        except requests.RequestException as exc:
            logger.warning("POST %s failed: %s", path, type(exc).__name__)
            raise HubSpotUnavailable(
                f"Could not reach HubSpot for POST {path} ({type(exc).__name__})."
            ) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug("POST %s -> %s in %.0f ms", path, response.status_code, elapsed_ms)
        if response.status_code >= 400:
            raise oauth_error(response, path, secrets)
        if response.status_code >= 300:
            raise HubSpotUnavailable(
                f"HubSpot answered POST {path} with a redirect (HTTP {response.status_code}); "
                "it was not followed.",
                http_status=response.status_code,
            )
        if not expect_json:
            return {}
        body = json_object(response)
        if body is None:
            raise HubSpotUnavailable(
                f"HubSpot answered POST {path} with HTTP {response.status_code} "
                "but a body that is not a JSON object.",
                http_status=response.status_code,
            )
        for key in ("access_token", "refresh_token"):  # never a plain copy in a frame
            if isinstance(body.get(key), str):
                body[key] = secret(body[key])
        return body


_local = threading.local()


def get_client() -> HubSpotOAuthClient:
    """This thread's client for the current settings; its session keeps connections alive."""
    key = (
        app_settings.CLIENT_ID,
        app_settings.CLIENT_SECRET,
        app_settings.AUTHORIZE_URL,
        app_settings.API_BASE_URL,
        app_settings.OAUTH_API_VERSION,
        app_settings.HTTP_TIMEOUT,
    )
    cached: tuple[tuple[object, ...], HubSpotOAuthClient] | None = getattr(_local, "client", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    if cached is not None:
        cached[1].close()
    client = HubSpotOAuthClient()
    _local.client = (key, client)
    return client


def close_client() -> None:
    """Close this thread's client, if it has one (worker threads call it when done)."""
    cached: tuple[tuple[object, ...], HubSpotOAuthClient] | None = getattr(_local, "client", None)
    if cached is not None:
        cached[1].close()
        del _local.client
