"""The fake's OAuth endpoints: token (code and refresh grants), introspect, revoke."""

from __future__ import annotations

import secrets
import uuid
from typing import TYPE_CHECKING, Any

from .wire import FakeResponse, json_response, oauth_error

if TYPE_CHECKING:
    from .fake import FakeHubSpot


def _new_access_token() -> str:
    # Real access tokens are opaque, about 150-300 characters, and change size over time.
    return "C" + secrets.token_urlsafe(secrets.choice(range(110, 220)))


def client_error(fake: FakeHubSpot, form: dict[str, str]) -> FakeResponse | None:
    if form.get("client_id") != fake.client_id:
        return oauth_error("invalid_client", "BAD_CLIENT_ID", "missing or unknown client id")
    if form.get("client_secret") != fake.client_secret:
        return oauth_error(
            "invalid_client", "BAD_CLIENT_SECRET", "missing or invalid client secret"
        )
    return None


def issue(
    fake: FakeHubSpot,
    data: dict[str, Any],
    portal_id: int,
    scopes: list[str],
    refresh_token: str | None,
    expires_in: int | None = None,
) -> dict[str, Any]:
    portal = fake.portals.get(portal_id, {})
    if refresh_token is None:
        refresh_token = f"{portal.get('hublet', 'na1')}-{uuid.uuid4()}"
        data.setdefault("refresh_tokens", {})[refresh_token] = {
            "portal_id": portal_id,
            "scopes": scopes,
            "revoked": False,
        }
    lifetime = fake.access_token_lifetime if expires_in is None else expires_in
    access_token = _new_access_token()
    data.setdefault("access_tokens", {})[access_token] = {
        "portal_id": portal_id,
        "scopes": scopes,
        "expires_at": fake.clock() + lifetime,
        "refresh_token": refresh_token,
    }
    body: dict[str, Any] = {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "expires_in": lifetime,
        "token_type": "bearer",
        "token_use": "access_token",
    }
    if fake.include_token_metadata:
        body.update(hub_id=portal_id, scopes=scopes, user_id=portal.get("user_id", 1))
    return body


def token(fake: FakeHubSpot, data: dict[str, Any], form: dict[str, str]) -> FakeResponse:
    grant_type = form.get("grant_type")
    if grant_type not in ("authorization_code", "refresh_token"):
        return oauth_error("unsupported_grant_type", "BAD_GRANT_TYPE", "unknown grant_type")
    refused = client_error(fake, form)
    if refused is not None:
        return refused
    if grant_type == "authorization_code":
        grant = data.get("codes", {}).pop(form.get("code", ""), None)
        if grant is None:
            return oauth_error("invalid_grant", "BAD_AUTH_CODE", "missing or unknown code")
        if grant["expires_at"] < fake.clock():
            return oauth_error("invalid_grant", "EXPIRED_AUTH_CODE", "code expired")
        if grant["redirect_uri"] != form.get("redirect_uri"):
            return oauth_error(
                "invalid_grant",
                "MISMATCH_REDIRECT_URI_AUTH_CODE",
                "redirect_uri does not match the one used for the code",
            )
        return json_response(200, issue(fake, data, grant["portal_id"], grant["scopes"], None))
    old = form.get("refresh_token", "")
    calls = data.setdefault("refresh_calls", {})
    calls[old] = calls.get(old, 0) + 1
    refresh_grant = data.get("refresh_tokens", {}).get(old)
    if refresh_grant is None or refresh_grant.get("revoked"):
        return oauth_error("invalid_grant", "BAD_REFRESH_TOKEN", "missing or unknown token")
    keep: str | None = old
    if fake.rotate_refresh_tokens:
        refresh_grant["revoked"] = True
        keep = None
    body = issue(fake, data, refresh_grant["portal_id"], refresh_grant["scopes"], keep)
    return json_response(200, body)


def introspect(fake: FakeHubSpot, data: dict[str, Any], form: dict[str, str]) -> FakeResponse:
    refused = client_error(fake, form)
    if refused is not None:
        return refused
    token = form.get("token", "")
    now = fake.clock()
    access = data.get("access_tokens", {}).get(token)
    refresh = data.get("refresh_tokens", {}).get(token)
    if access is not None and access["expires_at"] > now:
        portal_id, scopes, use = access["portal_id"], access["scopes"], "access_token"
    elif refresh is not None and not refresh.get("revoked"):
        portal_id, scopes, use = refresh["portal_id"], refresh["scopes"], "refresh_token"
    else:
        return json_response(200, {"active": False})
    portal = fake.portals.get(portal_id, {})
    body: dict[str, Any] = {
        "active": True,
        "app_id": 1000001,
        "client_id": fake.client_id,
        "hub_domain": portal.get("hub_domain", f"portal-{portal_id}.hubspot.com"),
        "hub_id": portal_id,
        "is_private_distribution": False,
        "scopes": scopes,
        "token": token,
        "token_type": "bearer",
        "token_use": use,
        "user": portal.get("user", "user@example.com"),
        "user_id": portal.get("user_id", 1),
    }
    if use == "access_token":
        body["expires_in"] = int(access["expires_at"] - now)
        body["signed_access_token"] = {
            "appId": 1000001,
            "expiresAt": int(access["expires_at"] * 1000),
            "hubId": portal_id,
            "hublet": portal.get("hublet", "na1"),
            "scopes": "fake",
            "userId": portal.get("user_id", 1),
            "isUserLevel": False,
            "isServiceAccount": False,
            "isPrivateDistribution": False,
        }
    return json_response(200, body)


def revoke(fake: FakeHubSpot, data: dict[str, Any], form: dict[str, str]) -> FakeResponse:
    refused = client_error(fake, form)
    if refused is not None:
        return refused
    token = form.get("token", "")
    grant = data.get("refresh_tokens", {}).get(token)
    if grant is not None:
        grant["revoked"] = True
        for access in data.get("access_tokens", {}).values():
            if access["refresh_token"] == token:
                access["expires_at"] = 0
    return FakeResponse(204)
