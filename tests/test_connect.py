"""hubspot_connect.connect: connect_portal and disconnect_connection."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.contrib.auth.models import AnonymousUser

from hubspot_connect.client import get_client
from hubspot_connect.connect import connect_portal, disconnect_connection
from hubspot_connect.exceptions import (
    HubSpotOAuthError,
    HubSpotRateLimited,
    HubSpotUnavailable,
    InvalidGrant,
)
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.session import HubSpotSession
from hubspot_connect.signals import (
    hubspot_connected,
    hubspot_disconnected,
)
from hubspot_connect.testing import FakeHubSpot
from tests.helpers import MakeConnection, stored

pytestmark = pytest.mark.django_db

REDIRECT = "https://testserver/hubspot/callback/"


def authorization_code(fake: FakeHubSpot, portal_id: int = 12345678) -> str:
    url = get_client().authorization_url(redirect_uri=REDIRECT, state="state-1")
    callback = fake.approve(url, portal_id=portal_id)
    return parse_qs(urlsplit(callback).query)["code"][0]


def test_connect_portal_stores_the_portal(
    fake_hubspot: FakeHubSpot, connector: Any, received: Any
) -> None:
    calls = received(hubspot_connected)
    connection, created = connect_portal(
        code=authorization_code(fake_hubspot), redirect_uri=REDIRECT, user=connector
    )
    assert created is True
    row = stored(connection)
    assert (row.portal_id, row.hub_domain, row.hublet) == (
        12345678,
        "demo-company.hubspot.com",
        "na1",
    )
    assert row.hubspot_user_email == "owner@demo-company.example"
    assert row.hubspot_user_id == 4101
    assert row.connected_by == connector
    assert "oauth" in row.scopes
    assert fake_hubspot.is_issued_access_token(row.access_token)
    assert row.expires_at is not None
    assert [(call["created"], call["request"]) for call in calls] == [(True, None)]


def test_reconnecting_makes_a_needs_reauth_row_active_again(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    old = make_connection(
        status="needs_reauth", refresh_failures=4, last_error="invalid_grant", hub_domain=""
    )
    connection, created = connect_portal(
        code=authorization_code(fake_hubspot), redirect_uri=REDIRECT, user=AnonymousUser()
    )
    assert created is False
    assert connection.pk == old.pk
    row = stored(old)
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert (row.refresh_failures, row.last_error, row.lease_expires_at) == (0, "", None)
    assert row.refresh_token != old.refresh_token
    assert row.connected_by is None


def test_connect_survives_a_failed_introspection_when_the_token_names_the_portal(
    db: None, fake_hubspot: FakeHubSpot, caplog: Any
) -> None:
    code = authorization_code(fake_hubspot, portal_id=87654321)
    fake_hubspot.fail("status", status=503, endpoint="introspect")
    connection, created = connect_portal(code=code, redirect_uri=REDIRECT)
    assert created is True
    assert connection.portal_id == 87654321
    assert connection.hublet == "eu1"  # from the refresh token's prefix
    assert connection.hub_domain == ""
    assert "introspection failed" in caplog.text


def test_connect_uses_introspection_when_the_token_response_has_no_portal(
    db: None, fake_hubspot: FakeHubSpot
) -> None:
    fake_hubspot.include_token_metadata = False
    connection, _ = connect_portal(code=authorization_code(fake_hubspot), redirect_uri=REDIRECT)
    assert connection.portal_id == 12345678
    assert connection.hubspot_user_id == 4101


def test_connect_fails_when_no_portal_can_be_known(db: None, fake_hubspot: FakeHubSpot) -> None:
    fake_hubspot.include_token_metadata = False
    code = authorization_code(fake_hubspot)
    fake_hubspot.fail("status", status=503, endpoint="introspect")
    with pytest.raises(HubSpotUnavailable):
        connect_portal(code=code, redirect_uri=REDIRECT)
    assert not HubSpotConnection.objects.exists()


def test_connect_fails_when_introspection_names_no_portal(db: None) -> None:
    token = {"access_token": "Cabc", "refresh_token": "na1-r", "expires_in": 1800}
    with responses.RequestsMock() as mock:
        mock.post("https://api.hubapi.com/oauth/2026-03/token", json=token)
        mock.post("https://api.hubapi.com/oauth/2026-03/token/introspect", json={"active": False})
        with pytest.raises(HubSpotUnavailable, match="which portal"):
            connect_portal(code="na1-code", redirect_uri=REDIRECT)
    assert not HubSpotConnection.objects.exists()


def test_disconnect_revokes_and_wipes(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, received: Any
) -> None:
    connection = make_connection()
    refresh = connection.refresh_token
    calls = received(hubspot_disconnected)
    connection.disconnect()
    assert not fake_hubspot.is_live_refresh_token(refresh)
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.DISCONNECTED
    assert (row.access_token, row.refresh_token, row.expires_at) == ("", "", None)
    assert [call["connection"].pk for call in calls] == [connection.pk]


def test_disconnect_without_revoking_makes_no_http_call(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    refresh = connection.refresh_token
    connection.disconnect(revoke=False)
    assert fake_hubspot.requests == []
    assert fake_hubspot.is_live_refresh_token(refresh)
    assert stored(connection).status == HubSpotConnection.Status.DISCONNECTED


def test_disconnect_keeps_the_row_when_hubspot_is_down(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("status", status=503, endpoint="revoke")
    with pytest.raises(HubSpotUnavailable):
        disconnect_connection(connection)
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert row.refresh_token == connection.refresh_token


def test_disconnect_wipes_even_if_hubspot_refuses_the_revocation(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("invalid_grant", endpoint="revoke")
    disconnect_connection(connection)
    assert stored(connection).status == HubSpotConnection.Status.DISCONNECTED


# -- what HubSpot says about the account -----------------------------------------------------


@pytest.mark.parametrize(
    ("portal_id", "expected"),
    [
        (12345678, ("app.hubspot.com", "na1", "STANDARD", "US/Eastern")),
        (87654321, ("app-eu1.hubspot.com", "eu1", "STANDARD", "Europe/Berlin")),
    ],
)
def test_connect_records_the_account_details(
    fake_hubspot: FakeHubSpot, portal_id: int, expected: tuple[str, ...]
) -> None:
    connection, _ = connect_portal(
        code=authorization_code(fake_hubspot, portal_id), redirect_uri=REDIRECT
    )
    row = stored(connection)
    assert (row.ui_domain, row.data_hosting_location, row.account_type, row.time_zone) == expected
    assert ("GET", "/account-info/2026-03/details", {}) in fake_hubspot.requests


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 500},
        {"kind": "status", "status": 401},
        {"kind": "timeout"},
        {"kind": "reset"},
        {"kind": "non_json", "status": 502},
        {"kind": "truncated"},
    ],
)
def test_a_failing_account_details_call_never_fails_the_connection(
    fake_hubspot: FakeHubSpot, caplog: pytest.LogCaptureFixture, fault: dict[str, Any]
) -> None:
    fake_hubspot.fail(endpoint="api", **fault)
    with caplog.at_level(logging.WARNING, logger="hubspot_connect"):
        connection, created = connect_portal(
            code=authorization_code(fake_hubspot), redirect_uri=REDIRECT
        )
    row = stored(connection)
    assert created
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert (row.ui_domain, row.time_zone) == ("", "")
    assert "reading its account details failed" in caplog.text
    assert row.access_token not in caplog.text
    assert row.refresh_token not in caplog.text


# -- uninstall --------------------------------------------------------------------------------


def test_disconnect_can_uninstall_the_app_first(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    access, refresh = connection.access_token, connection.refresh_token
    connection.disconnect(uninstall=True)
    assert [(method, path) for method, path, _ in fake_hubspot.requests] == [
        ("DELETE", "/appinstalls/2026-03/external-install"),
        ("POST", "/oauth/2026-03/token/revoke"),
    ]
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.DISCONNECTED
    assert (row.access_token, row.refresh_token) == ("", "")
    # HubSpot forgot the app: its tokens no longer work.
    assert not fake_hubspot.is_live_refresh_token(refresh)
    with pytest.raises(InvalidGrant):
        get_client().refresh(refresh)
    answer = requests.get(
        "https://api.hubapi.com/account-info/2026-03/details",
        headers={"Authorization": f"Bearer {access}"},
        timeout=5,
    )
    assert answer.status_code == 401


def test_uninstall_uses_a_fresh_access_token(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=10)
    disconnect_connection(connection, uninstall=True)
    assert fake_hubspot.refresh_calls() == 1
    assert 12345678 in fake_hubspot.store._data["uninstalled"]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"kind": "status", "status": 500}, HubSpotUnavailable),
        ({"kind": "status", "status": 503, "times": 5}, HubSpotUnavailable),
        ({"kind": "reset", "times": 5}, HubSpotUnavailable),
        ({"kind": "status", "status": 403}, HubSpotOAuthError),
    ],
)
def test_a_failed_uninstall_changes_nothing(
    make_connection: MakeConnection,
    fake_hubspot: FakeHubSpot,
    monkeypatch: pytest.MonkeyPatch,
    fault: dict[str, Any],
    error: type[Exception],
) -> None:
    monkeypatch.setattr(HubSpotSession, "backoff", 0.01)  # retry without the test waiting
    connection = make_connection()
    fake_hubspot.fail(endpoint="api", **fault)
    with pytest.raises(error):
        connection.disconnect(uninstall=True)
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert row.refresh_token == connection.refresh_token
    assert fake_hubspot.is_live_refresh_token(connection.refresh_token)
    assert "revoke" not in str(fake_hubspot.requests)


def test_a_daily_limit_stops_the_uninstall(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.limits.daily = 0
    with pytest.raises(HubSpotRateLimited):
        connection.disconnect(uninstall=True)
    assert stored(connection).status == HubSpotConnection.Status.ACTIVE


@pytest.mark.parametrize("how", ["revoked", "needs_reauth", "unknown_token"])
def test_uninstalling_an_app_hubspot_already_dropped_still_disconnects(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, how: str
) -> None:
    connection = make_connection(status="needs_reauth" if how == "needs_reauth" else "active")
    if how == "revoked":  # the customer uninstalled the app in HubSpot
        fake_hubspot.revoke_all()
        fake_hubspot.expire_access_tokens()
    elif how == "unknown_token":
        fake_hubspot.fail("status", status=404, endpoint="api")
    disconnect_connection(connection, uninstall=True)
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.DISCONNECTED
    assert (row.access_token, row.refresh_token) == ("", "")
