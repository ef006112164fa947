"""The parts of the app that touch the host site, in whatever site runs this module.

The connect flow through the callback, the admin (list, search, every filter, detail page,
both actions, the connect and reconnect buttons), ``get_access_token``,
``aget_access_token`` and ``api_session``, ``refresh_hubspot_tokens`` in a child process,
and ``rotate_hubspot_token_key``. ``make test-sites`` runs it in every host-site variant
(``tests/sites/*.py``); the main suite runs it on ``tests.settings``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import router
from django.db.models import TextField
from django.db.models.functions import Cast
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from hubspot_connect.models import HubSpotConnection
from hubspot_connect.testing import FakeHubSpot, FakeHubSpotServer
from hubspot_connect.tokens import aget_access_token, api_session, get_access_token
from tests.sites.conftest import create_user, login_of, start_flow
from tests.sites.views import fingerprint

pytestmark = pytest.mark.django_db(databases="__all__")

MakeConnection = Callable[..., HubSpotConnection]
CHANGELIST = "admin:hubspot_connect_hubspotconnection_changelist"


def text_of(response: Any) -> str:
    return response.content.decode().replace("\xa0", " ")


def stored(portal_id: int) -> HubSpotConnection:
    return HubSpotConnection.objects.get(portal_id=portal_id)


# -- the connect flow ---------------------------------------------------------------------


def test_connect_flow_through_the_callback(
    site_client: Client, site_user: Any, fake_hubspot: FakeHubSpot
) -> None:
    callback = start_flow(site_client, fake_hubspot)
    assert callback.status_code == 302, text_of(callback)[:500]
    connection = stored(12345678)
    assert connection.status == "active"
    assert connection.connected_by_id == site_user.pk
    assert connection.connected_by == site_user
    assert fake_hubspot.is_issued_access_token(connection.access_token)
    left = connection.expires_in()
    assert left is not None
    assert timedelta(minutes=29) < left <= timedelta(minutes=30)
    again = start_flow(site_client, fake_hubspot)
    assert again.status_code == 302
    assert HubSpotConnection.objects.count() == 1


def test_the_flow_carries_next_through_the_callback(
    site_client: Client, fake_hubspot: FakeHubSpot
) -> None:
    target = reverse(CHANGELIST)
    callback = start_flow(site_client, fake_hubspot, next_url=target)
    assert callback.status_code == 302
    assert callback["Location"] == target


def test_who_may_not_connect_is_refused(client: Client, fake_hubspot: FakeHubSpot) -> None:
    client.force_login(create_user("visitor"))
    response = client.get(reverse("hubspot_connect:connect"))
    assert response.status_code == 403
    assert not HubSpotConnection.objects.exists()


def test_anonymous_users_go_to_the_login_page(client: Client) -> None:
    response = client.get(reverse("hubspot_connect:connect"))
    assert response.status_code == 302
    assert settings.LOGIN_URL in response["Location"]


# -- the admin ------------------------------------------------------------------------------


@pytest.fixture
def portals(make_connection: MakeConnection, site_user: Any) -> dict[str, HubSpotConnection]:
    """One connection in every state the admin tells apart."""
    return {
        "active": make_connection(1001, expires_in=7200, connected_by_id=site_user.pk),
        "expiring": make_connection(1002, expires_in=300),
        "expired": make_connection(1003, expires_in=-60),
        "needs_reauth": make_connection(1004, status=HubSpotConnection.Status.NEEDS_REAUTH),
        "disconnected": make_connection(1005, status=HubSpotConnection.Status.DISCONNECTED),
    }


def listed(client: Client, **query: str) -> set[int]:
    response = client.get(reverse(CHANGELIST), query)
    assert response.status_code == 200, text_of(response)[:1000]
    return {
        int(portal)
        for portal in re.findall(r'class="hubspot-portal-link"[^>]*>(\d+)<', text_of(response))
    }


def test_admin_list_and_search(
    staff_client: Client, portals: dict[str, HubSpotConnection], site_user: Any
) -> None:
    every = {connection.portal_id for connection in portals.values()}
    assert listed(staff_client) == every
    assert listed(staff_client, q="1003") == {1003}
    assert listed(staff_client, q="portal-1002.hubspot") == {1002}
    user_model = get_user_model()
    assert listed(staff_client, q=getattr(site_user, user_model.USERNAME_FIELD)) == {1001}
    assert listed(staff_client, q=login_of("connector").split("@")[0]) == {1001}
    assert listed(staff_client, q="no-such-portal-or-user") == set()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("status", "active", {1001}),
        ("status", "expiring", {1002, 1003}),
        ("status", "needs_reauth", {1004}),
        ("status", "disconnected", {1005}),
        ("expires", "expired", {1003}),
        ("expires", "15m", {1002, 1003}),
        ("expires", "1h", {1002, 1003}),
        ("expires", "later", {1001}),
    ],
)
def test_admin_filters(
    staff_client: Client,
    portals: dict[str, HubSpotConnection],
    name: str,
    value: str,
    expected: set[int],
) -> None:
    assert listed(staff_client, **{name: value}) >= expected
    if name == "status":
        assert listed(staff_client, **{name: value}) == expected


def test_admin_detail_page_shows_the_portal_and_its_times(
    staff_client: Client, portals: dict[str, HubSpotConnection], site_user: Any
) -> None:
    for connection in portals.values():
        url = reverse("admin:hubspot_connect_hubspotconnection_change", args=[connection.pk])
        response = staff_client.get(url)
        assert response.status_code == 200, text_of(response)[:1000]
        page = text_of(response)
        assert str(connection.portal_id) in page
        assert connection.access_token not in page
        assert connection.refresh_token not in page
    page = text_of(
        staff_client.get(
            reverse("admin:hubspot_connect_hubspotconnection_change", args=[portals["active"].pk])
        )
    )
    assert str(site_user) in page
    # The token expires in two hours in the site's own time.
    assert re.search(r"in (1 hour|2 hours)", page), page


def test_admin_list_shows_times_in_the_sites_clock(
    staff_client: Client, make_connection: MakeConnection
) -> None:
    make_connection(2001, expires_in=1800)
    page = text_of(staff_client.get(reverse(CHANGELIST)))
    assert re.search(r"in (29|30) minutes", page), page
    local = timezone.localtime() if settings.USE_TZ else timezone.now()
    assert local.strftime("%Y") in page


def test_admin_actions_refresh_and_disconnect(
    staff_client: Client, portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    active = portals["active"]
    old_token = active.access_token
    url = reverse(CHANGELIST)
    refreshed = staff_client.post(
        url, {"action": "refresh_tokens", "_selected_action": [active.pk]}, follow=True
    )
    assert refreshed.status_code == 200
    assert stored(1001).access_token != old_token
    assert fake_hubspot.is_issued_access_token(stored(1001).access_token)
    confirm = staff_client.post(url, {"action": "disconnect", "_selected_action": [active.pk]})
    assert confirm.status_code == 200
    assert "1001" in text_of(confirm)
    done = staff_client.post(
        url, {"action": "disconnect", "_selected_action": [active.pk], "post": "yes"}, follow=True
    )
    assert done.status_code == 200
    assert stored(1001).status == "disconnected"


def test_admin_connect_and_reconnect_buttons(
    staff_client: Client, portals: dict[str, HubSpotConnection]
) -> None:
    connect = reverse("hubspot_connect:connect")
    page = text_of(staff_client.get(reverse(CHANGELIST)))
    assert connect in page
    assert "Reconnect" in page
    detail = reverse(
        "admin:hubspot_connect_hubspotconnection_change", args=[portals["needs_reauth"].pk]
    )
    detail_page = text_of(staff_client.get(detail))
    assert connect in detail_page
    assert "Reconnect" in detail_page


# -- the token API ------------------------------------------------------------------------------


def test_get_access_token_fresh_and_due(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    fresh = make_connection(3001, expires_in=3600)
    assert get_access_token(3001) == fresh.access_token
    due = make_connection(3002, expires_in=60)
    token = get_access_token(3002)
    assert token != due.access_token
    assert fake_hubspot.is_issued_access_token(token)
    row = stored(3002)
    assert row.access_token == token
    assert row.lease_expires_at is None
    left = row.expires_in()
    assert left is not None
    assert timedelta(minutes=29) < left <= timedelta(minutes=30)


def test_aget_access_token_in_an_async_view(
    site_client: Client, make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    make_connection(3003, expires_in=60)
    response = site_client.get(reverse("async_token", args=[3003]))
    assert response.status_code == 200
    assert response.json()["token"] == fingerprint(stored(3003).access_token)
    assert fake_hubspot.refresh_calls() == 1
    assert async_to_sync(aget_access_token)(3003) == stored(3003).access_token


def test_api_session_calls_hubspot_as_the_portal(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    make_connection(3004, expires_in=-5)
    session = api_session(3004)
    account = session.get("/account-info/2026-03/details")
    assert account.status_code == 200
    assert account.json()["portalId"] == 3004
    contacts = session.get("/crm/objects/2026-03/contacts", params={"limit": 2})
    assert contacts.status_code == 200
    assert len(contacts.json()["results"]) == 2
    assert fake_hubspot.refresh_calls() == 1


# -- commands -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases="__all__")
@pytest.mark.usefixtures("file_databases")
def test_refresh_hubspot_tokens_in_a_child_process(
    fake_server: FakeHubSpotServer, manage: Callable[..., Any]
) -> None:
    fake = fake_server.fake
    for portal_id, expires_in in ((4001, 60), (4002, 300), (4003, 7200)):
        issued = fake.issue_tokens(portal_id, ["oauth"])
        HubSpotConnection.objects.create(
            portal_id=portal_id,
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            expires_at=timezone.now() + timedelta(seconds=expires_in),
        )
    before = {row.portal_id: row.access_token for row in HubSpotConnection.objects.all()}
    done = manage("refresh_hubspot_tokens", "--concurrency", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "refreshed 2" in done.stdout
    after = {row.portal_id: row for row in HubSpotConnection.objects.all()}
    assert after[4001].access_token != before[4001]
    assert after[4002].access_token != before[4002]
    assert after[4003].access_token == before[4003]
    assert fake.refresh_calls() == 2
    for portal_id in (4001, 4002):
        left = after[portal_id].expires_in()
        assert left is not None
        assert timedelta(minutes=29) < left <= timedelta(minutes=30)
        assert after[portal_id].lease_expires_at is None


def test_rotate_hubspot_token_key(make_connection: MakeConnection) -> None:
    connection = make_connection(5001)
    new_key = Fernet.generate_key().decode()
    with override_settings(FIELD_ENCRYPTION_KEY=[new_key, settings.FIELD_ENCRYPTION_KEY]):
        call_command("rotate_hubspot_token_key", stdout=io.StringIO())
        assert get_access_token(5001) == connection.access_token
    alias = router.db_for_write(HubSpotConnection)
    raw = (
        HubSpotConnection.objects.using(alias)
        .annotate(raw=Cast("access_token", TextField()))
        .values_list("raw", flat=True)
        .get(portal_id=5001)
    )
    assert Fernet(new_key).decrypt(raw.encode()).decode() == connection.access_token


def test_the_app_never_names_user_fields_directly() -> None:
    """Only USERNAME_FIELD, EMAIL_FIELD, get_username() and str(user) reach the user."""
    package = Path(__file__).resolve().parents[2] / "hubspot_connect"
    pattern = re.compile(r"(\.|__)(username|email|first_name|last_name)\b")
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in [*package.rglob("*.py"), *package.rglob("*.html")]
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line.split("#")[0])
    ]
    assert found == []


def test_hubspot_status_reports_in_the_sites_clock(make_connection: MakeConnection) -> None:
    since = timezone.now() - timedelta(hours=2)
    make_connection(6001, refresh_failures=3, failing_since=since, last_error="HTTP 503")
    make_connection(6002, status=HubSpotConnection.Status.NEEDS_REAUTH)
    make_connection(6003)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("hubspot_status", "--json", stdout=out)
    assert exited.value.code == 1
    report = json.loads(out.getvalue())
    rows = {row["portal_id"]: row for row in report["connections"]}
    assert set(rows) == {6001, 6002}
    reported = datetime.fromisoformat(rows[6001]["failing_since"])
    assert timezone.is_aware(reported) == settings.USE_TZ
    assert abs(reported - since) < timedelta(seconds=1)
    table = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("hubspot_status", stdout=table)
    assert "6001" in table.getvalue()
    assert since.isoformat(timespec="seconds") in table.getvalue()
