"""hubspot_connect.connect: connect_portal and disconnect_connection."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.contrib.auth.models import AnonymousUser

from hubspot_connect.client import get_client
from hubspot_connect.connect import connect_portal, disconnect_connection
from hubspot_connect.exceptions import (
    HubSpotUnavailable,
)
from hubspot_connect.models import HubSpotConnection
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
