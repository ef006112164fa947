"""The connection's detail page: its history; the Refresh now, Disconnect, Reconnect buttons."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hubspot_connect.admin.detail import TIMELINE_LENGTH
from hubspot_connect.events import record
from hubspot_connect.models import EventKind, HubSpotConnection, HubSpotConnectionEvent
from hubspot_connect.testing import FakeHubSpot
from tests.helpers import MakeConnection, stored
from tests.test_admin import assert_no_token, change_url, client_for, messages_of, staff, text

pytestmark = pytest.mark.django_db


def refresh_url(connection: HubSpotConnection) -> str:
    return reverse("admin:hubspot_connect_hubspotconnection_refresh", args=[connection.pk])


def disconnect_url(connection: HubSpotConnection) -> str:
    return reverse("admin:hubspot_connect_hubspotconnection_disconnect", args=[connection.pk])


def add_events(connection: HubSpotConnection, count: int, actor: Any = None) -> None:
    start = timezone.now() - timedelta(days=1)
    HubSpotConnectionEvent.objects.bulk_create(
        HubSpotConnectionEvent(
            connection=connection,
            kind=EventKind.REFRESH_FAILED,
            created_at=start + timedelta(minutes=n),
            message=f"failure number {n}",
            http_status=503,
            actor=actor,
        )
        for n in range(count)
    )


def timeline_of(html: str) -> str:
    start = html.index('<fieldset class="module aligned hubspot-history">')
    return html[start : html.index("</fieldset>", start)]


# -- the timeline ------------------------------------------------------------------------------


def test_timeline_shows_what_happened_newest_first(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    grace = User.objects.create_user("grace")
    connection = make_connection(24681357)
    record(EventKind.CONNECTED, connection, actor=grace)
    failed = record(
        EventKind.REFRESH_FAILED,
        connection,
        message="HubSpot server error on POST /oauth/2026-03/token: HTTP 502.",
        http_status=502,
        correlation="c0ffee-12",
    )
    assert failed is not None
    HubSpotConnectionEvent.objects.filter(pk=failed.pk).update(
        created_at=timezone.now() + timedelta(seconds=1)
    )
    timeline = timeline_of(text(admin_client.get(change_url(connection))))
    items = re.findall(r'<li class="hubspot-event hubspot-event-(\w+)">', timeline)
    assert items == ["refresh_failed", "connected"]
    assert (
        '<span class="hubspot-badge hubspot-kind hubspot-kind-refresh_failed">refresh failed'
        in (timeline)
    )
    assert "HubSpot server error on POST /oauth/2026-03/token: HTTP 502." in timeline
    assert "HTTP 502" in timeline
    assert "correlation id <code>c0ffee-12</code>" in timeline
    assert "by grace" in timeline
    assert "older event" not in timeline


def test_timeline_is_bounded_and_counts_the_older_events(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    connection = make_connection()
    add_events(connection, TIMELINE_LENGTH + 7)
    timeline = timeline_of(text(admin_client.get(change_url(connection))))
    assert timeline.count('<li class="hubspot-event') == TIMELINE_LENGTH
    assert f"failure number {TIMELINE_LENGTH + 6}<" in timeline  # the newest
    assert "failure number 6<" not in timeline  # the seventh oldest is left out
    assert "7 older events are not shown." in timeline


def test_timeline_of_a_connection_with_no_events(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    timeline = timeline_of(text(admin_client.get(change_url(make_connection()))))
    assert "Nothing has happened to this connection yet." in timeline


def test_timeline_messages_and_other_fields(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    connection = make_connection(
        refresh_count=41,
        refresh_failures=2,
        failing_since=timezone.now() - timedelta(hours=5),
        scopes=["oauth"],
        ui_domain="app-eu1.hubspot.com",
        data_hosting_location="eu1",
    )
    html = text(admin_client.get(change_url(connection)))
    assert re.search(r"Successful refreshes:</label>\s*<div class=\"readonly\">41</div>", html)
    assert re.search(
        r"Failing since:</label>\s*<div class=\"readonly\"><time[^>]*>5 hours ago", html
    )
    assert (
        '<ul class="hubspot-scopes hubspot-scopes-missing"><li><code>crm.objects.contacts.read'
        in html
    )
    assert 'href="https://app-eu1.hubspot.com/settings/12345678"' in html


@pytest.mark.parametrize("count", [1, 3 * TIMELINE_LENGTH])
def test_detail_query_count_is_constant_in_events(
    admin_client: Client, make_connection: MakeConnection, count: int
) -> None:
    users = User.objects.bulk_create([User(username=f"u{n}") for n in range(5)])
    connection = make_connection(connected_by=users[0])
    other = make_connection(87654321)
    add_events(connection, 1, actor=users[1])
    admin_client.get(change_url(connection))  # warm caches
    with CaptureQueriesContext(db) as one:
        assert admin_client.get(change_url(connection)).status_code == 200
    for user in users:
        add_events(connection, count, actor=user)
        add_events(other, count, actor=user)
    with CaptureQueriesContext(db) as many:
        response = admin_client.get(change_url(connection))
    assert response.status_code == 200
    assert len(many.captured_queries) == len(one.captured_queries)
    assert not any("JOIN" in q["sql"] and "auth_user" in q["sql"] for q in many.captured_queries)
    for entry in many.captured_queries:
        if "hubspot_connect_hubspotconnection" in entry["sql"]:
            assert "access_token" not in entry["sql"].split("FROM")[0]


# -- Refresh now -------------------------------------------------------------------------------


def test_refresh_now_refreshes_and_comes_back(
    admin_client: Client, make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=3000)
    html = text(admin_client.get(change_url(connection)))
    assert (
        f'<form method="post" action="{refresh_url(connection)}" class="hubspot-tool-form">'
    ) in html
    response = admin_client.post(refresh_url(connection))
    assert response.status_code == 302
    assert response["Location"] == change_url(connection)
    assert stored(connection).access_token != connection.access_token
    assert stored(connection).refresh_count == 1
    page = admin_client.get(change_url(connection))
    assert messages_of(page) == ["Refreshed the tokens of 1 portal: 12345678."]
    assert LogEntry.objects.get().get_change_message() == "Refreshed the tokens."


def test_refresh_now_reports_an_outage_and_the_timeline_shows_it(
    admin_client: Client, make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("status", status=503, times=5)
    response = admin_client.post(refresh_url(connection), follow=True)
    assert messages_of(response) == [
        "Refreshing portal 12345678 failed: HubSpot is unavailable (503). The old tokens "
        "were kept; try again later."
    ]
    assert "hubspot-event-refresh_failed" in timeline_of(text(response))
    assert_no_token(text(response), [connection.access_token, connection.refresh_token])


def test_refresh_now_is_post_only_and_needs_the_change_permission(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, admin_client: Client
) -> None:
    connection = make_connection()
    assert admin_client.get(refresh_url(connection)).status_code == 405
    viewer = client_for(staff("view_hubspotconnection"))
    assert viewer.post(refresh_url(connection)).status_code == 403
    html = text(viewer.get(change_url(connection)))
    assert "Refresh now" not in html
    assert "Disconnect" not in html
    assert fake_hubspot.refresh_calls() == 0
    missing = reverse("admin:hubspot_connect_hubspotconnection_refresh", args=["987654"])
    assert admin_client.post(missing).status_code == 404
    garbage = reverse("admin:hubspot_connect_hubspotconnection_refresh", args=["x1"])
    assert admin_client.post(garbage).status_code == 404


def test_no_refresh_button_for_a_portal_that_is_not_active(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    connection = make_connection(status="needs_reauth")
    assert "Refresh now" not in text(admin_client.get(change_url(connection)))


# -- Disconnect --------------------------------------------------------------------------------


def test_disconnect_asks_then_revokes_and_records_who(
    admin_client: Client, make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    html = text(admin_client.get(change_url(connection)))
    assert (
        f'<a href="{disconnect_url(connection)}" class="hubspot-tool-danger">Disconnect</a>'
        in (html)
    )
    confirm = admin_client.get(disconnect_url(connection))
    assert confirm.status_code == 200
    page = text(confirm)
    assert "Disconnect this HubSpot portal?" in page
    assert f'href="{change_url(connection)}">HubSpot portal 12345678' in page  # breadcrumbs
    assert (
        '<input type="checkbox" name="uninstall" value="yes"> Also uninstall the app from '
        "the customer's HubSpot account"
    ) in page
    assert 'name="action"' not in page
    assert fake_hubspot.is_live_refresh_token(connection.refresh_token)

    done = admin_client.post(disconnect_url(connection), {"post": "yes"})
    assert done["Location"] == change_url(connection)
    row = stored(connection)
    assert (row.status, row.access_token, row.refresh_token) == ("disconnected", "", "")
    assert not fake_hubspot.is_live_refresh_token(connection.refresh_token)
    assert not any(path.endswith("/external-install") for _m, path, _f in fake_hubspot.requests)
    event = HubSpotConnectionEvent.objects.get()
    assert event.kind == "disconnected"
    assert event.actor is not None
    assert event.actor.get_username() == "admin"
    after = text(admin_client.get(change_url(connection)))
    assert "by admin" in timeline_of(after)
    assert 'class="hubspot-tool-danger"' not in after  # nothing left to disconnect
    again = admin_client.get(disconnect_url(connection), follow=True)
    assert messages_of(again) == ["This portal is already disconnected."]


def test_disconnect_can_also_uninstall_the_app(
    admin_client: Client, make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    admin_client.post(disconnect_url(connection), {"post": "yes", "uninstall": "yes"})
    assert any(
        (method, path) == ("DELETE", "/appinstalls/2026-03/external-install")
        for method, path, _f in fake_hubspot.requests
    )
    assert stored(connection).status == "disconnected"
    kinds = list(HubSpotConnectionEvent.objects.order_by("pk").values_list("kind", flat=True))
    assert kinds == ["uninstalled", "disconnected"]
    assert LogEntry.objects.get().get_change_message() == (
        "Disconnected: app uninstalled, revoked at HubSpot, tokens wiped."
    )


def test_the_list_action_offers_the_uninstall_too(
    admin_client: Client, make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    rows = [make_connection(1), make_connection(2)]
    changelist = reverse("admin:hubspot_connect_hubspotconnection_changelist")
    data: dict[str, Any] = {"action": "disconnect", "_selected_action": [row.pk for row in rows]}
    confirm = text(admin_client.post(changelist, data))
    assert 'name="uninstall" value="yes"' in confirm
    assert 'name="action" value="disconnect"' in confirm
    done = admin_client.post(changelist, {**data, "post": "yes", "uninstall": "yes"}, follow=True)
    assert messages_of(done) == ["Disconnected 2 portals: 1, 2."]
    uninstalls = [p for _m, p, _f in fake_hubspot.requests if p.endswith("/external-install")]
    assert len(uninstalls) == 2
    assert HubSpotConnectionEvent.objects.filter(kind="uninstalled").count() == 2


def test_an_uninstall_hubspot_refuses_changes_nothing(
    admin_client: Client, make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("status", status=403, endpoint="api")
    response = admin_client.post(
        disconnect_url(connection), {"post": "yes", "uninstall": "yes"}, follow=True
    )
    assert messages_of(response) == [
        "Portal 12345678 was not disconnected: HubSpot refused (403). Nothing was changed."
    ]
    assert stored(connection).status == "active"
    assert fake_hubspot.is_live_refresh_token(connection.refresh_token)
    assert not HubSpotConnectionEvent.objects.exists()


def test_disconnect_needs_the_delete_permission(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    client = client_for(staff("view_hubspotconnection", "change_hubspotconnection"))
    assert client.get(disconnect_url(connection)).status_code == 403
    assert client.post(disconnect_url(connection), {"post": "yes"}).status_code == 403
    assert stored(connection).status == "active"
    assert "Refresh now" in text(client.get(change_url(connection)))


# -- Reconnect ---------------------------------------------------------------------------------


RECONNECT = re.compile(
    r'<form method="post" action="([^"]+)" class="hubspot-tool-form">'
    r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]+">'
    r'<input type="hidden" name="next" value="([^"]+)">'
    r'<input type="hidden" name="portal" value="(\d+)">'
)


@pytest.mark.parametrize(
    ("fields", "offered"),
    [
        ({"status": "needs_reauth"}, True),
        ({"status": "disconnected", "access_token": "", "refresh_token": ""}, True),
        ({"scopes": ["oauth"]}, True),  # active, but a required scope was never granted
        ({}, False),
    ],
)
def test_reconnect_opens_hubspot_for_this_portal(
    admin_client: Client,
    make_connection: MakeConnection,
    fake_hubspot: FakeHubSpot,
    fields: dict[str, Any],
    offered: bool,
) -> None:
    connection = make_connection(87654321, **fields)
    html = text(admin_client.get(change_url(connection)))
    found = RECONNECT.search(html)
    assert bool(found) is offered
    if found is None:
        return
    action, next_url, portal = found.groups()
    assert (action, next_url, portal) == (
        reverse("hubspot_connect:connect"),
        change_url(connection),
        "87654321",
    )
    start = admin_client.post(action, {"next": next_url, "portal": portal})
    assert start.status_code == 302
    assert "/oauth/87654321/authorize?" in start["Location"]
    callback = admin_client.get(fake_hubspot.approve(start["Location"]))
    assert callback["Location"] == change_url(connection)
    row = stored(connection)
    assert row.status == "active"
    assert row.missing_scopes == set()
    kinds = set(HubSpotConnectionEvent.objects.values_list("kind", flat=True))
    assert "reconnected" in kinds


def test_reconnect_is_offered_only_to_who_may_connect(make_connection: MakeConnection) -> None:
    connection = make_connection(status="needs_reauth")
    viewer = client_for(staff("view_hubspotconnection"))
    assert not RECONNECT.search(text(viewer.get(change_url(connection))))
    connector = client_for(
        staff("view_hubspotconnection", "add_hubspotconnection", username="connector2")
    )
    assert RECONNECT.search(text(connector.get(change_url(connection))))
