"""HubSpot's wire format, read: token answers, introspection answers, account details,
error bodies.

Error bodies follow RFC 6749 plus HubSpot's legacy fields (``status``, ``message``) and
its API fields (``category``, ``correlationId``); every text taken from them is redacted
of the request's secrets before it reaches an exception message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from .exceptions import (
    HubSpotConnectError,
    HubSpotOAuthError,
    HubSpotUnavailable,
    InvalidClient,
    InvalidGrant,
)
from .sensitive import secret
from .transport import json_object, parse_retry_after, redact

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


def oauth_error(
    response: requests.Response, path: str, secrets: tuple[str, ...], *, method: str = "POST"
) -> HubSpotConnectError:
    status = response.status_code
    body = json_object(response) or {}
    correlation_id = str(body.get("correlationId") or "")
    reference = f" (correlation id {correlation_id})" if correlation_id else ""
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        what = "rate limit reached" if status == 429 else "server error"
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return HubSpotUnavailable(
            f"HubSpot {what} on {method} {path}: HTTP {status}{wait}{reference}.",
            retry_after=retry_after,
            http_status=status,
        )
    error = redact(str(body.get("error") or ""), secrets)
    legacy_status = redact(str(body.get("status") or ""), secrets)
    category = redact(str(body.get("category") or ""), secrets)
    description = redact(str(body.get("error_description") or body.get("message") or ""), secrets)
    if not body:
        description = "the body is not a JSON object"
    cls: type[HubSpotOAuthError] = HubSpotOAuthError
    if error == "invalid_grant" or legacy_status in _GRANT_STATUSES:
        cls = InvalidGrant
    elif error == "invalid_client" or legacy_status in _CLIENT_STATUSES or status == 401:
        cls = InvalidClient
    code = error or legacy_status or category or f"HTTP {status}"
    return cls(
        f"HubSpot rejected {method} {path} with HTTP {status}: {code}"
        + (f": {description}" if description else "")
        + reference,
        error=error,
        description=description,
        status=legacy_status,
        category=category,
        correlation_id=correlation_id,
        http_status=status,
    )


@dataclass(frozen=True)
class AccountDetails:
    """What ``GET /account-info/2026-03/details`` says about an account, cut to the
    lengths of the connection's fields (the values come from the network)."""

    ui_domain: str = ""
    data_hosting_location: str = ""
    account_type: str = ""
    time_zone: str = ""

    def fields(self) -> dict[str, str]:
        """The connection's fields to update: only what HubSpot said."""
        return {name: value for name, value in self.__dict__.items() if value}


def account_details(body: Any) -> AccountDetails:
    """An ``/account-info/2026-03/details`` answer."""
    body = body if isinstance(body, dict) else {}

    def text(key: str, length: int) -> str:
        value = body.get(key)
        return value.strip()[:length] if isinstance(value, str) else ""

    return AccountDetails(
        ui_domain=text("uiDomain", 255),
        data_hosting_location=text("dataHostingLocation", 32),
        account_type=text("accountType", 64),
        time_zone=text("timeZone", 64),
    )


def token_response(
    body: dict[str, Any], *, current_refresh_token: str | None = None
) -> TokenResponse:
    """A token answer (code exchange or refresh)."""
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
        access_token=secret(access_token),
        refresh_token=secret(refresh_token),
        expires_in=expires_in,
        token_type=str(body.get("token_type") or "bearer"),
        token_use=str(body.get("token_use") or "access_token"),
        hub_id=_optional_int(body, "hub_id"),
        scopes=_scope_tuple(body.get("scopes")),
        user_id=_optional_int(body, "user_id"),
    )


def token_info(body: dict[str, Any]) -> TokenInfo:
    """An introspection answer."""
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
