"""HubSpotOAuthClient: the exact requests it sends and how it reads every kind of answer."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from django.test import override_settings

from hubspot_connect import __version__
from hubspot_connect.client import (
    USER_AGENT,
    HubSpotOAuthClient,
    TokenInfo,
    TokenResponse,
    get_client,
    parse_retry_after,
)
from hubspot_connect.exceptions import (
    HubSpotConnectError,
    HubSpotOAuthError,
    HubSpotUnavailable,
    InvalidClient,
    InvalidGrant,
)

BASE = "https://api.hubapi.com"
TOKEN_URL = f"{BASE}/oauth/2026-03/token"
INTROSPECT_URL = f"{BASE}/oauth/2026-03/token/introspect"
REVOKE_URL = f"{BASE}/oauth/2026-03/token/revoke"
CLIENT_ID = "cid-1234"
SECRET = "s3cret-client-value-9f8e7d"
CODE = "na1-auth-code-0c4b8a1e"
ACCESS = "CJ" + "x" * 250
REFRESH = "na1-refresh-7d2e9f10"
REDIRECT = "https://example.com/hubspot/callback/"
TOKEN_BODY = {
    "access_token": ACCESS,
    "refresh_token": REFRESH,
    "expires_in": 1800,
    "token_type": "bearer",
    "token_use": "access_token",
    "hub_id": 12345678,
    "scopes": ["oauth", "crm.objects.contacts.read"],
    "user_id": 4101,
}
SECRETS = (SECRET, CODE, ACCESS, REFRESH)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def oauth() -> HubSpotOAuthClient:
    return HubSpotOAuthClient(client_id=CLIENT_ID, client_secret=SECRET, timeout=7)


def form_of(call: Any) -> dict[str, str]:
    body = call.request.body
    if isinstance(body, bytes):
        body = body.decode()
    return dict(parse_qsl(body, keep_blank_values=True, strict_parsing=True))


OPERATIONS: dict[str, tuple[str, Callable[[HubSpotOAuthClient], Any], dict[str, Any]]] = {
    "exchange_code": (
        TOKEN_URL,
        lambda c: c.exchange_code(CODE, redirect_uri=REDIRECT),
        TOKEN_BODY,
    ),
    "refresh": (TOKEN_URL, lambda c: c.refresh(REFRESH), TOKEN_BODY),
    "introspect": (INTROSPECT_URL, lambda c: c.introspect(ACCESS), {"active": True}),
    "revoke": (REVOKE_URL, lambda c: c.revoke(REFRESH), {}),
}


# -- what goes over the wire ------------------------------------------------------------


def test_exchange_code_posts_the_code_form(rsps, oauth):
    rsps.post(TOKEN_URL, json=TOKEN_BODY)
    oauth.exchange_code(CODE, redirect_uri=REDIRECT)
    (call,) = rsps.calls
    assert call.request.method == "POST"
    assert call.request.url == TOKEN_URL
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(call) == {
        "grant_type": "authorization_code",
        "code": CODE,
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }


def test_refresh_posts_the_refresh_form(rsps, oauth):
    rsps.post(TOKEN_URL, json=TOKEN_BODY)
    oauth.refresh(REFRESH)
    (call,) = rsps.calls
    assert call.request.method == "POST"
    assert call.request.url == TOKEN_URL
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(call) == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }


def test_introspect_posts_token_and_hint(rsps, oauth):
    rsps.post(INTROSPECT_URL, json={"active": True})
    oauth.introspect(ACCESS)
    oauth.introspect(REFRESH, token_type_hint="refresh_token")
    first, second = rsps.calls
    assert first.request.url == INTROSPECT_URL
    assert first.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(first) == {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "token": ACCESS,
        "token_type_hint": "access_token",
    }
    assert form_of(second)["token"] == REFRESH
    assert form_of(second)["token_type_hint"] == "refresh_token"


def test_revoke_posts_the_refresh_token_and_accepts_an_empty_answer(rsps, oauth):
    rsps.post(REVOKE_URL, status=204)
    assert oauth.revoke(REFRESH) is None
    (call,) = rsps.calls
    assert call.request.method == "POST"
    assert call.request.url == REVOKE_URL
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(call) == {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "token": REFRESH,
        "token_type_hint": "refresh_token",
    }


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_call_has_timeout_and_user_agent(rsps, oauth, operation):
    url, call_it, body = OPERATIONS[operation]
    seen: list[Any] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        seen.append(request)
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    rsps.add_callback(responses.POST, url, callback=answer)
    call_it(oauth)
    (request,) = seen
    assert request.req_kwargs["timeout"] == 7
    assert request.headers["User-Agent"] == f"django-hubspot-connect/{__version__}"
    assert request.headers["Accept"] == "application/json"
    assert urlsplit(request.url).query == ""


@override_settings(HUBSPOT_HTTP_TIMEOUT=3)
def test_timeout_comes_from_the_setting(rsps):
    seen: list[Any] = []
    rsps.add_callback(
        responses.POST, REVOKE_URL, callback=lambda r: (seen.append(r), (204, {}, ""))[1]
    )
    HubSpotOAuthClient().revoke(REFRESH)
    assert seen[0].req_kwargs["timeout"] == 3.0


@override_settings(
    HUBSPOT_CLIENT_ID="from-settings",
    HUBSPOT_CLIENT_SECRET="secret-from-settings",
    HUBSPOT_API_BASE_URL="https://hubspot.proxy.example/base/",
    HUBSPOT_OAUTH_API_VERSION="2027-09",
)
def test_client_reads_credentials_base_url_and_version_from_settings(rsps):
    url = "https://hubspot.proxy.example/base/oauth/2027-09/token"
    rsps.post(url, json=TOKEN_BODY)
    HubSpotOAuthClient().refresh(REFRESH)
    sent = form_of(rsps.calls[0])
    assert rsps.calls[0].request.url == url
    assert (sent["client_id"], sent["client_secret"]) == ("from-settings", "secret-from-settings")


def test_a_given_session_is_used_and_labelled(rsps):
    session = requests.Session()
    oauth = HubSpotOAuthClient(client_id=CLIENT_ID, client_secret=SECRET, session=session)
    assert oauth.session is session
    assert session.headers["User-Agent"] == USER_AGENT
    rsps.post(REVOKE_URL, status=200)
    oauth.revoke(REFRESH)
    assert len(rsps.calls) == 1
    oauth.close()


# -- the consent-screen URL --------------------------------------------------------------


def test_authorization_url_encodes_scopes_with_percent_20():
    oauth = HubSpotOAuthClient(client_id=CLIENT_ID, client_secret=SECRET)
    url = oauth.authorization_url(
        redirect_uri=REDIRECT,
        state="st-abc_123",
        scopes=["oauth", "crm.objects.contacts.read"],
        optional_scopes=["crm.objects.deals.read", "tickets"],
    )
    assert url.startswith("https://app.hubspot.com/oauth/authorize?")
    query = urlsplit(url).query
    assert "scope=oauth%20crm.objects.contacts.read" in query.split("&")
    assert "optional_scope=crm.objects.deals.read%20tickets" in query.split("&")
    assert "+" not in query
    assert "redirect_uri=https%3A%2F%2Fexample.com%2Fhubspot%2Fcallback%2F" in query.split("&")
    assert dict(parse_qsl(query)) == {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "oauth crm.objects.contacts.read",
        "optional_scope": "crm.objects.deals.read tickets",
        "state": "st-abc_123",
    }
    assert SECRET not in url


def test_authorization_url_leaves_out_optional_scope_when_there_is_none():
    oauth = HubSpotOAuthClient(client_id=CLIENT_ID, client_secret=SECRET)
    url = oauth.authorization_url(
        redirect_uri=REDIRECT, state="s", scopes=["oauth"], optional_scopes=[]
    )
    assert "optional_scope" not in url
    assert dict(parse_qsl(urlsplit(url).query))["scope"] == "oauth"


@override_settings(
    HUBSPOT_SCOPES="oauth crm.objects.companies.read",
    HUBSPOT_OPTIONAL_SCOPES=[],
    HUBSPOT_AUTHORIZE_URL="https://app-eu1.hubspot.com/oauth/authorize?loc=de",
)
def test_authorization_url_uses_settings_and_keeps_an_existing_query():
    url = HubSpotOAuthClient().authorization_url(redirect_uri=REDIRECT, state="s")
    assert url.startswith("https://app-eu1.hubspot.com/oauth/authorize?loc=de&client_id=")
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["scope"] == "oauth crm.objects.companies.read"
    assert "optional_scope" not in query


@pytest.mark.parametrize(
    ("authorize_url", "expected"),
    [
        (
            "https://app.hubspot.com/oauth/authorize",
            "https://app.hubspot.com/oauth/123/authorize?",
        ),
        (
            "https://app-eu1.hubspot.com/oauth/authorize?loc=de",
            "https://app-eu1.hubspot.com/oauth/123/authorize?loc=de&client_id=",
        ),
        (
            "http://127.0.0.1:8000/fake/oauth/authorize/",
            "http://127.0.0.1:8000/fake/oauth/123/authorize/?",
        ),
        ("https://sso.example/authorize-proxy", "https://sso.example/authorize-proxy?"),
    ],
)
def test_authorization_url_for_one_portal(authorize_url, expected):
    oauth = HubSpotOAuthClient(
        client_id=CLIENT_ID, client_secret=SECRET, authorize_url=authorize_url
    )
    url = oauth.authorization_url(
        redirect_uri=REDIRECT, state="s", scopes=["oauth"], portal_id=123
    )
    assert url.startswith(expected)
    plain = oauth.authorization_url(redirect_uri=REDIRECT, state="s", scopes=["oauth"])
    assert dict(parse_qsl(urlsplit(url).query)) == dict(parse_qsl(urlsplit(plain).query))


@pytest.mark.parametrize("portal_id", [0, -1, True, "123", 1.0])
def test_authorization_url_refuses_a_portal_id_that_is_not_a_positive_int(portal_id):
    oauth = HubSpotOAuthClient(client_id=CLIENT_ID, client_secret=SECRET)
    with pytest.raises(ValueError, match="positive int"):
        oauth.authorization_url(redirect_uri=REDIRECT, state="s", portal_id=portal_id)


# -- parsing good answers ------------------------------------------------------------------


def test_token_response_is_parsed(rsps, oauth):
    rsps.post(TOKEN_URL, json=TOKEN_BODY)
    tokens = oauth.exchange_code(CODE, redirect_uri=REDIRECT)
    assert tokens == TokenResponse(
        access_token=ACCESS,
        refresh_token=REFRESH,
        expires_in=1800,
        token_type="bearer",
        token_use="access_token",
        hub_id=12345678,
        scopes=("oauth", "crm.objects.contacts.read"),
        user_id=4101,
    )


def test_token_response_metadata_is_optional(rsps, oauth):
    rsps.post(
        TOKEN_URL,
        json={"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": "1800"},
    )
    tokens = oauth.refresh(REFRESH)
    assert (tokens.hub_id, tokens.scopes, tokens.user_id) == (None, None, None)
    assert tokens.expires_in == 1800
    assert (tokens.token_type, tokens.token_use) == ("bearer", "access_token")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"scopes": "oauth tickets", "hub_id": "42"}, (42, ("oauth", "tickets"))),
        ({"scopes": 7, "hub_id": True}, (None, None)),
        ({"scopes": None, "hub_id": "not-a-number"}, (None, None)),
    ],
)
def test_token_response_tolerates_odd_metadata(rsps, oauth, extra, expected):
    rsps.post(TOKEN_URL, json={**TOKEN_BODY, **extra})
    tokens = oauth.refresh(REFRESH)
    assert (tokens.hub_id, tokens.scopes) == expected


def test_introspection_is_parsed_with_hublet_from_signed_access_token(rsps, oauth):
    rsps.post(
        INTROSPECT_URL,
        json={
            "active": True,
            "app_id": 1000001,
            "client_id": CLIENT_ID,
            "expires_in": 1700,
            "hub_domain": "acme-europe.hubspot.com",
            "hub_id": 87654321,
            "is_private_distribution": False,
            "scopes": ["oauth"],
            "token": ACCESS,
            "token_type": "bearer",
            "token_use": "access_token",
            "user": "ops@acme.example",
            "user_id": 4202,
            "signed_access_token": {"hublet": "eu1", "hubId": 87654321, "signature": "x"},
        },
    )
    assert oauth.introspect(ACCESS) == TokenInfo(
        active=True,
        hub_id=87654321,
        hub_domain="acme-europe.hubspot.com",
        user="ops@acme.example",
        user_id=4202,
        scopes=("oauth",),
        app_id=1000001,
        expires_in=1700,
        token_use="access_token",
        hublet="eu1",
    )


@pytest.mark.parametrize(
    "body",
    [{"active": False}, {"active": False, "signed_access_token": "not-an-object"}],
)
def test_introspection_of_an_inactive_token_has_empty_defaults(rsps, oauth, body):
    rsps.post(INTROSPECT_URL, json=body)
    assert oauth.introspect(ACCESS) == TokenInfo(active=False)


# -- every error shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "cls", "attrs"),
    [
        pytest.param(
            400,
            {"error": "invalid_grant", "error_description": "code expired"},
            InvalidGrant,
            {"error": "invalid_grant", "description": "code expired", "status": ""},
            id="rfc6749-invalid_grant",
        ),
        pytest.param(
            400,
            {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"},
            InvalidGrant,
            {"error": "", "status": "BAD_REFRESH_TOKEN"},
            id="legacy-BAD_REFRESH_TOKEN",
        ),
        pytest.param(
            400,
            {"status": "EXPIRED_AUTH_CODE", "message": "expired"},
            InvalidGrant,
            {"status": "EXPIRED_AUTH_CODE", "description": "expired"},
            id="legacy-EXPIRED_AUTH_CODE",
        ),
        pytest.param(
            400,
            {"status": "MISMATCH_REDIRECT_URI_AUTH_CODE", "message": "redirect mismatch"},
            InvalidGrant,
            {"status": "MISMATCH_REDIRECT_URI_AUTH_CODE"},
            id="legacy-redirect-mismatch",
        ),
        pytest.param(
            400,
            {"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"},
            InvalidClient,
            {"status": "BAD_CLIENT_ID", "description": "missing or unknown client id"},
            id="legacy-BAD_CLIENT_ID",
        ),
        pytest.param(
            400,
            {"error": "invalid_client", "error_description": "bad secret"},
            InvalidClient,
            {"error": "invalid_client"},
            id="rfc6749-invalid_client",
        ),
        pytest.param(
            400,
            {
                "error": "invalid_grant",
                "error_description": "missing or unknown token",
                "status": "BAD_REFRESH_TOKEN",
                "message": "other text",
                "category": "BAD_REQUEST",
                "correlationId": "c0ffee00-1111-2222-3333-444455556666",
            },
            InvalidGrant,
            {
                "error": "invalid_grant",
                "description": "missing or unknown token",
                "status": "BAD_REFRESH_TOKEN",
                "category": "BAD_REQUEST",
                "correlation_id": "c0ffee00-1111-2222-3333-444455556666",
            },
            id="both-shapes",
        ),
        pytest.param(
            400,
            {
                "category": "VALIDATION_ERROR",
                "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
                "message": "Invalid input",
            },
            HubSpotOAuthError,
            {
                "category": "VALIDATION_ERROR",
                "correlation_id": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
                "description": "Invalid input",
            },
            id="category-shape",
        ),
        pytest.param(
            401,
            {"category": "INVALID_AUTHENTICATION", "message": "no", "correlationId": "c1"},
            InvalidClient,
            {"category": "INVALID_AUTHENTICATION", "correlation_id": "c1"},
            id="401-is-invalid-client",
        ),
        pytest.param(
            400,
            {"error": "unsupported_grant_type"},
            HubSpotOAuthError,
            {"error": "unsupported_grant_type", "description": ""},
            id="other-rfc-error",
        ),
    ],
)
def test_4xx_bodies_map_to_oauth_errors(rsps, oauth, status, body, cls, attrs):
    rsps.post(TOKEN_URL, status=status, json=body)
    with pytest.raises(HubSpotOAuthError) as caught:
        oauth.refresh(REFRESH)
    exc = caught.value
    assert type(exc) is cls
    assert exc.http_status == status
    for name, value in attrs.items():
        assert getattr(exc, name) == value, name
    assert f"HTTP {status}" in str(exc)
    assert "/oauth/2026-03/token" in str(exc)
    if exc.correlation_id:
        assert exc.correlation_id in str(exc)


@pytest.mark.parametrize("status", [400, 403, 404])
def test_4xx_with_a_non_json_body(rsps, oauth, status):
    rsps.post(TOKEN_URL, status=status, body="<html>Forbidden</html>", content_type="text/html")
    with pytest.raises(HubSpotOAuthError) as caught:
        oauth.refresh(REFRESH)
    assert type(caught.value) is HubSpotOAuthError
    assert caught.value.http_status == status
    assert caught.value.description == "the body is not a JSON object"
    assert "<html>" not in str(caught.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unavailable(rsps, oauth, status):
    rsps.post(
        TOKEN_URL,
        status=status,
        json={"category": "INTERNAL_ERROR", "message": "boom", "correlationId": "corr-5"},
    )
    with pytest.raises(HubSpotUnavailable) as caught:
        oauth.exchange_code(CODE, redirect_uri=REDIRECT)
    assert caught.value.http_status == status
    assert caught.value.retry_after is None
    assert "server error" in str(caught.value)
    assert "corr-5" in str(caught.value)


def test_5xx_html_page_is_unavailable(rsps, oauth):
    rsps.post(TOKEN_URL, status=502, body="<h1>Bad Gateway</h1>", content_type="text/html")
    with pytest.raises(HubSpotUnavailable) as caught:
        oauth.refresh(REFRESH)
    assert caught.value.http_status == 502


def test_429_with_retry_after_seconds(rsps, oauth):
    rsps.post(
        TOKEN_URL,
        status=429,
        json={"category": "RATE_LIMITS", "message": "slow down", "correlationId": "c"},
        headers={"Retry-After": "12"},
    )
    with pytest.raises(HubSpotUnavailable) as caught:
        oauth.refresh(REFRESH)
    assert caught.value.http_status == 429
    assert caught.value.retry_after == 12.0
    assert "rate limit" in str(caught.value)
    assert "retry after 12 s" in str(caught.value)


def test_429_with_retry_after_http_date(rsps, oauth):
    when = datetime.now(timezone.utc) + timedelta(seconds=90)
    rsps.post(TOKEN_URL, status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    with pytest.raises(HubSpotUnavailable) as caught:
        oauth.refresh(REFRESH)
    assert caught.value.retry_after is not None
    assert 80 <= caught.value.retry_after <= 90


def test_429_without_retry_after(rsps, oauth):
    rsps.post(TOKEN_URL, status=429, json={"category": "RATE_LIMITS", "message": "m"})
    with pytest.raises(HubSpotUnavailable) as caught:
        oauth.refresh(REFRESH)
    assert caught.value.retry_after is None
    assert "retry after" not in str(caught.value)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:00", 30.0),  # no zone: read as UTC
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
    ],
)
def test_parse_retry_after(header, expected):
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after(header, now=now) == expected


@pytest.mark.parametrize(
    "raised",
    [
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectTimeout("connect timed out"),
    ],
)
def test_timeouts_are_unavailable(rsps, oauth, raised):
    rsps.post(TOKEN_URL, body=raised)
    with pytest.raises(HubSpotUnavailable) as caught:
        oauth.refresh(REFRESH)
    assert "within 7 s" in str(caught.value)
    assert caught.value.http_status is None
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    "raised",
    [
        requests.exceptions.ConnectionError("connection reset"),
        requests.exceptions.SSLError("bad certificate"),
        requests.exceptions.ChunkedEncodingError("broken"),
    ],
)
def test_connection_errors_are_unavailable(rsps, oauth, raised):
    rsps.post(TOKEN_URL, body=raised)
    with pytest.raises(HubSpotUnavailable) as caught:
        oauth.refresh(REFRESH)
    assert type(raised).__name__ in str(caught.value)


def test_a_redirect_is_not_followed(oauth):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post(TOKEN_URL, status=307, headers={"Location": "https://evil.example/collect"})
        elsewhere = rsps.post("https://evil.example/collect", json=TOKEN_BODY)
        with pytest.raises(HubSpotUnavailable) as caught:
            oauth.refresh(REFRESH)
    assert elsewhere.call_count == 0
    assert caught.value.http_status == 307
    assert "evil.example" not in str(caught.value)


@pytest.mark.parametrize(
    "body",
    ["<html>ok</html>", '{"access_token": "Cabc", "refresh_tok', "[1, 2]", '"a string"', ""],
)
def test_200_that_is_not_a_json_object_is_unavailable(rsps, oauth, body):
    rsps.post(TOKEN_URL, status=200, body=body)
    with pytest.raises(HubSpotUnavailable) as caught:
        oauth.refresh(REFRESH)
    assert caught.value.http_status == 200
    assert "not a JSON object" in str(caught.value)


@pytest.mark.parametrize(
    ("missing", "body"),
    [
        (["access_token"], {"refresh_token": REFRESH, "expires_in": 1800}),
        (["refresh_token"], {"access_token": ACCESS, "expires_in": 1800}),
        (["expires_in"], {"access_token": ACCESS, "refresh_token": REFRESH}),
        (["expires_in"], {"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 0}),
        (["access_token"], {"access_token": 5, "refresh_token": REFRESH, "expires_in": 1}),
        (["access_token", "refresh_token", "expires_in"], {"token_type": "bearer"}),
    ],
)
def test_200_missing_token_fields_is_unavailable(rsps, oauth, missing, body):
    rsps.post(TOKEN_URL, json=body)
    with pytest.raises(HubSpotUnavailable) as caught:
        oauth.exchange_code(CODE, redirect_uri=REDIRECT)
    assert str(caught.value) == (
        "HubSpot's token response lacks " + ", ".join(missing) + "; nothing was stored."
    )


def test_error_classes_form_one_hierarchy():
    assert issubclass(InvalidGrant, HubSpotOAuthError)
    assert issubclass(InvalidClient, HubSpotOAuthError)
    assert issubclass(HubSpotOAuthError, HubSpotConnectError)
    assert issubclass(HubSpotUnavailable, HubSpotConnectError)


# -- secrets stay secret -----------------------------------------------------------------------

# What each operation sends (besides the client secret); HubSpot may echo any of it.
SENT = {"exchange_code": CODE, "refresh": REFRESH, "introspect": ACCESS, "revoke": REFRESH}


def _echoing_errors(sent: str) -> list[tuple[int, dict[str, Any]]]:
    return [
        (
            400,
            {
                "error": "invalid_grant",
                "error_description": f"value {sent} for secret {SECRET}",
                "status": f"BAD_{SECRET}",
                "category": f"cat {sent}",
            },
        ),
        (400, {"message": f"{SECRET} {sent}", "correlationId": "c"}),
        (401, {"error": sent, "message": f"x{SECRET}x"}),
        (500, {"message": f"{SECRET} {sent}"}),
        (429, {"message": f"{SECRET} {sent}"}),
    ]


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("operation", OPERATIONS)
def test_secrets_never_in_exceptions_or_logs(rsps, oauth, caplog, case, operation):
    caplog.set_level(logging.DEBUG)
    url, call_it, _ = OPERATIONS[operation]
    status, body = _echoing_errors(SENT[operation])[case]
    rsps.post(url, status=status, json=body)
    with pytest.raises(HubSpotConnectError) as caught:
        call_it(oauth)
    exc = caught.value
    _assert_no_secret(str(exc))
    _assert_no_secret(repr(exc))
    _assert_no_secret(repr(vars(exc)))
    for record in caplog.records:
        _assert_no_secret(record.getMessage())
    _assert_no_secret(rsps.calls[0].request.url)
    if status < 500 and status != 429:
        assert "[redacted]" in str(exc)


def test_reprs_show_no_secret(rsps, oauth):
    rsps.post(TOKEN_URL, json=TOKEN_BODY)
    tokens = oauth.exchange_code(CODE, redirect_uri=REDIRECT)
    _assert_no_secret(repr(tokens))
    _assert_no_secret(str(tokens))
    _assert_no_secret(repr(oauth))
    assert CLIENT_ID in repr(oauth)


class _Handler(BaseHTTPRequestHandler):
    answers: list[tuple[int, dict[str, Any]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = self.answers.pop(0)
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_secrets_never_in_urllib3_debug_logs_over_real_http(caplog):
    """A real socket, so urllib3 and http.client log what they really log."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.answers = [
        (200, TOKEN_BODY),
        (200, TOKEN_BODY),
        (200, {"active": True, "hub_id": 1}),
        (200, {}),
        (400, {"error": "invalid_grant", "error_description": f"bad {CODE}"}),
    ]
    caplog.set_level(logging.DEBUG)
    oauth = HubSpotOAuthClient(
        client_id=CLIENT_ID,
        client_secret=SECRET,
        api_base_url=f"http://127.0.0.1:{server.server_port}",
        timeout=5,
    )
    try:
        oauth.exchange_code(CODE, redirect_uri=REDIRECT)
        oauth.refresh(REFRESH)
        oauth.introspect(ACCESS)
        oauth.revoke(REFRESH)
        with pytest.raises(InvalidGrant):
            oauth.exchange_code(CODE, redirect_uri=REDIRECT)
    finally:
        oauth.close()
        server.shutdown()
        server.server_close()
    urllib3_records = [r for r in caplog.records if r.name.startswith("urllib3")]
    assert urllib3_records, "urllib3 should log at DEBUG"
    assert any("/oauth/2026-03/token" in r.getMessage() for r in urllib3_records)
    for record in caplog.records:
        _assert_no_secret(record.getMessage())


# -- one client per thread and settings ---------------------------------------------------------


def test_get_client_reuses_one_client_until_settings_change():
    first = get_client()
    assert get_client() is first
    with override_settings(HUBSPOT_CLIENT_ID="another-app"):
        second = get_client()
        assert second is not first
        assert second.client_id == "another-app"
    third = get_client()
    assert third.client_id == "test-client-id"
    assert third is not second


def test_get_client_is_per_thread():
    here = get_client()
    there: list[HubSpotOAuthClient] = []
    thread = threading.Thread(target=lambda: there.append(get_client()))
    thread.start()
    thread.join()
    assert there[0] is not here


def test_refresh_answer_without_refresh_token_keeps_the_old_one() -> None:
    """RFC 6749 section 6: the server may omit a new refresh token on refresh."""
    import responses as responses_lib

    from hubspot_connect.client import HubSpotOAuthClient

    client = HubSpotOAuthClient(client_id="id", client_secret="secret-value")
    with responses_lib.RequestsMock() as mock:
        mock.add(
            "POST",
            client.endpoint("token"),
            json={"access_token": "Cnew-access", "expires_in": 1800, "token_type": "bearer"},
        )
        tokens = client.refresh("na1-old-refresh-token")
    assert tokens.access_token == "Cnew-access"
    assert tokens.refresh_token == "na1-old-refresh-token"


def test_exchange_answer_without_refresh_token_is_refused() -> None:
    import responses as responses_lib

    from hubspot_connect.client import HubSpotOAuthClient
    from hubspot_connect.exceptions import HubSpotUnavailable

    client = HubSpotOAuthClient(client_id="id", client_secret="secret-value")
    with responses_lib.RequestsMock() as mock:
        mock.add(
            "POST",
            client.endpoint("token"),
            json={"access_token": "Cnew-access", "expires_in": 1800, "token_type": "bearer"},
        )
        with pytest.raises(HubSpotUnavailable, match="refresh_token"):
            client.exchange_code("code-value", redirect_uri="https://testserver/cb/")


def test_close_client_closes_only_a_client_this_thread_made() -> None:
    from hubspot_connect.client import close_client, get_client

    close_client()  # none yet: nothing is made just to be closed
    first = get_client()
    close_client()
    assert get_client() is not first
    close_client()
