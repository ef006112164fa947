"""HubSpotOAuthClient: the only code that talks HTTP to HubSpot's OAuth API.

It knows HubSpot's wire format (``/oauth/{version}/token``, ``/token/introspect``,
``/token/revoke``, form-encoded bodies) and nothing of Django models. Every secret
travels in a form body, never in a URL, and no secret reaches a log line or an
exception message.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

from . import __version__
from .conf import app_settings
from .exceptions import (
    HubSpotConnectError,
    HubSpotOAuthError,
    HubSpotUnavailable,
    InvalidClient,
    InvalidGrant,
)

logger = logging.getLogger("hubspot_connect.client")

USER_AGENT = f"django-hubspot-connect/{__version__}"

# HubSpot's legacy ``status`` values that mean the same as RFC 6749's error codes.
_GRANT_STATUSES = frozenset(
    {
        "BAD_AUTH_CODE",
        "EXPIRED_AUTH_CODE",
        "BAD_REFRESH_TOKEN",
        "EXPIRED_REFRESH_TOKEN",
        "MISMATCH_REDIRECT_URI_AUTH_CODE",
    }
)
_CLIENT_STATUSES = frozenset({"BAD_CLIENT_ID", "BAD_CLIENT_SECRET", "INVALID_CLIENT"})
_MAX_TEXT = 300


@dataclass(frozen=True)
class TokenResponse:
    """A successful answer of the token endpoint."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    token_type: str = "bearer"  # noqa: S105
    token_use: str = "access_token"  # noqa: S105
    hub_id: int | None = None
    scopes: tuple[str, ...] | None = None
    user_id: int | None = None


@dataclass(frozen=True)
class TokenInfo:
    """A successful answer of the introspection endpoint."""

    active: bool
    hub_id: int | None = None
    hub_domain: str = ""
    user: str = ""
    user_id: int | None = None
    scopes: tuple[str, ...] = ()
    app_id: int | None = None
    expires_in: int | None = None
    token_use: str = ""
    hublet: str = ""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf" and "nan" parse as floats but are no delay anyone should wait for.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.now(timezone.utc).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text[:_MAX_TEXT]


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _scope_tuple(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list):
        return tuple(str(scope) for scope in value)
    if isinstance(value, str):
        return tuple(value.split())
    return None


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
        self._client_secret = (
            app_settings.CLIENT_SECRET if client_secret is None else client_secret
        )
        self.authorize_url = authorize_url or app_settings.AUTHORIZE_URL
        self.api_base_url = (api_base_url or app_settings.API_BASE_URL).rstrip("/")
        self.api_version = api_version or app_settings.OAUTH_API_VERSION
        self.timeout = app_settings.HTTP_TIMEOUT if timeout is None else timeout
        self.session = session or _new_session(self.api_base_url)
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
    ) -> str:
        """The consent-screen URL to send the user's browser to."""
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
        separator = "&" if urlsplit(self.authorize_url).query else "?"
        return self.authorize_url + separator + urlencode(params, quote_via=quote)

    def exchange_code(self, code: str, *, redirect_uri: str) -> TokenResponse:
        """Trade an authorization code for tokens."""
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
        return self._token_response(body)

    def refresh(self, refresh_token: str) -> TokenResponse:
        """Get a new access token (and possibly a new refresh token)."""
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
        return self._token_response(body, current_refresh_token=refresh_token)

    def introspect(
        self,
        token: str,
        *,
        token_type_hint: str = "access_token",  # noqa: S107
    ) -> TokenInfo:
        """Metadata of a token: portal, domain, user, scopes, hublet."""
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
        signed = body.get("signed_access_token")
        hublet = signed.get("hublet") if isinstance(signed, dict) else None
        return TokenInfo(
            active=bool(body.get("active", False)),
            hub_id=_optional_int(body, "hub_id"),
            hub_domain=str(body.get("hub_domain") or ""),
            user=str(body.get("user") or ""),
            user_id=_optional_int(body, "user_id"),
            scopes=_scope_tuple(body.get("scopes")) or (),
            app_id=_optional_int(body, "app_id"),
            expires_in=_optional_int(body, "expires_in"),
            token_use=str(body.get("token_use") or ""),
            hublet=str(hublet or ""),
        )

    def revoke(
        self,
        token: str,
        *,
        token_type_hint: str = "refresh_token",  # noqa: S107
    ) -> None:
        """Revoke a refresh token at HubSpot; the app's access for that portal ends."""
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
            raise self._error(response, path, secrets)
        if response.status_code >= 300:
            raise HubSpotUnavailable(
                f"HubSpot answered POST {path} with a redirect (HTTP {response.status_code}); "
                "it was not followed.",
                http_status=response.status_code,
            )
        if not expect_json:
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise HubSpotUnavailable(
                f"HubSpot answered POST {path} with HTTP {response.status_code} "
                "but a body that is not a JSON object.",
                http_status=response.status_code,
            )
        return body

    def _error(
        self, response: requests.Response, path: str, secrets: tuple[str, ...]
    ) -> HubSpotConnectError:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        correlation_id = str(body.get("correlationId") or "")
        reference = f" (correlation id {correlation_id})" if correlation_id else ""
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            what = "rate limit reached" if status == 429 else "server error"
            wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            return HubSpotUnavailable(
                f"HubSpot {what} on POST {path}: HTTP {status}{wait}{reference}.",
                retry_after=retry_after,
                http_status=status,
            )
        error = _redact(str(body.get("error") or ""), secrets)
        legacy_status = _redact(str(body.get("status") or ""), secrets)
        category = _redact(str(body.get("category") or ""), secrets)
        description = _redact(
            str(body.get("error_description") or body.get("message") or ""), secrets
        )
        if not body:
            description = "the body is not a JSON object"
        cls: type[HubSpotOAuthError] = HubSpotOAuthError
        if error == "invalid_grant" or legacy_status in _GRANT_STATUSES:
            cls = InvalidGrant
        elif error == "invalid_client" or legacy_status in _CLIENT_STATUSES or status == 401:
            cls = InvalidClient
        code = error or legacy_status or category or f"HTTP {status}"
        return cls(
            f"HubSpot rejected POST {path} with HTTP {status}: {code}"
            + (f": {description}" if description else "")
            + reference,
            error=error,
            description=description,
            status=legacy_status,
            category=category,
            correlation_id=correlation_id,
            http_status=status,
        )

    def _token_response(
        self, body: dict[str, Any], *, current_refresh_token: str | None = None
    ) -> TokenResponse:
        access_token = body.get("access_token")
        refresh_token = body.get("refresh_token") or current_refresh_token
        expires_in = _optional_int(body, "expires_in")
        missing = [
            name
            for name, value in (
                ("access_token", access_token),
                ("refresh_token", refresh_token),
                ("expires_in", expires_in),
            )
            if not value or (name != "expires_in" and not isinstance(value, str))
        ]
        if missing:
            raise HubSpotUnavailable(
                "HubSpot's token response lacks " + ", ".join(missing) + "; nothing was stored."
            )
        assert isinstance(access_token, str)
        assert isinstance(refresh_token, str)
        assert expires_in is not None
        return TokenResponse(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_in=expires_in,
            token_type=str(body.get("token_type") or "bearer"),
            token_use=str(body.get("token_use") or "access_token"),
            hub_id=_optional_int(body, "hub_id"),
            scopes=_scope_tuple(body.get("scopes")),
            user_id=_optional_int(body, "user_id"),
        )


def _new_session(base_url: str) -> requests.Session:
    """A session that reads proxy and CA settings from the environment once.

    With ``trust_env`` on, requests scans ``os.environ`` and looks for ``~/.netrc`` on
    every request (a fifth of a refresh's CPU). ``.netrc`` credentials are never wanted
    here: every secret travels in the form body. TLS verification stays on.
    """
    session = requests.Session()
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    return session


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
