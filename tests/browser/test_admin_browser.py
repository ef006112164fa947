"""Staff log in to the admin in Chromium, refresh a portal's tokens, and look at the pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from hubspot_connect.models import HubSpotConnection
from hubspot_connect.testing import FakeHubSpot

PASSWORD = "staff-password-for-browser"


@pytest.fixture(autouse=True, scope="module")
def _orm_beside_playwright() -> Iterator[None]:
    # Playwright's sync API leaves an asyncio loop marked as running on this thread, and
    # Django then refuses the test's (plain, synchronous) ORM calls and the database flush
    # after it. Module scope: set before pytest-django's fixtures, undone after their teardown.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture
def portals(fake_hubspot: FakeHubSpot, django_user_model: type[User]) -> list[HubSpotConnection]:
    """A realistic mix: healthy, expiring, rejected and disconnected portals."""
    grace = django_user_model.objects.create_user("grace", "grace@example.com", "pw")
    now = timezone.now()

    def make(portal_id: int, hublet: str, **fields: Any) -> HubSpotConnection:
        issued = fake_hubspot.issue_tokens(portal_id, ["oauth", "crm.objects.contacts.read"])
        values: dict[str, Any] = {
            "portal_id": portal_id,
            "hublet": hublet,
            "scopes": issued["scopes"],
            "access_token": issued["access_token"],
            "refresh_token": issued["refresh_token"],
            "expires_at": now + timedelta(minutes=25),
            "connected_by": grace,
            "last_refreshed_at": now - timedelta(minutes=5),
        }
        values.update(fields)
        return HubSpotConnection.objects.create(**values)

    return [
        make(
            12345678,
            "na1",
            hub_domain="demo-company.hubspot.com",
            hubspot_user_email="owner@demo-company.example",
            expires_at=now + timedelta(minutes=8),
        ),
        make(
            87654321,
            "eu1",
            hub_domain="acme-europe.hubspot.com",
            hubspot_user_email="ops@acme-europe.example",
        ),
        make(
            24681357,
            "na1",
            hub_domain="globex.hubspot.com",
            status="needs_reauth",
            refresh_failures=1,
            last_error="HubSpot rejected the refresh token (BAD_REFRESH_TOKEN): missing or "
            "unknown token",
            last_error_at=now - timedelta(hours=2),
            expires_at=now - timedelta(hours=2),
        ),
        make(
            13572468,
            "na1",
            hub_domain="initech.hubspot.com",
            status="disconnected",
            access_token="",
            refresh_token="",
            expires_at=None,
        ),
    ]


@pytest.fixture
def staff_user(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_superuser("staff", "staff@example.com", PASSWORD)


def test_staff_refresh_a_portal_in_the_admin(
    live_server: Any,
    portals: list[HubSpotConnection],
    staff_user: User,
    page: Any,
    screenshots: Path,
) -> None:
    changelist = reverse("admin:hubspot_connect_hubspotconnection_changelist")
    page.set_viewport_size({"width": 1440, "height": 900})  # a common laptop screen
    page.goto(f"{live_server.url}{reverse('admin:login')}?next={changelist}")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{changelist}")
    assert page.locator("#result_list tbody tr").count() == 4
    assert page.locator(".hubspot-badge-expiring").count() == 1
    page.screenshot(path=str(screenshots / "admin-connections-list.png"), full_page=True)

    target = portals[0]
    before = target.access_token
    page.check(f'input[name="_selected_action"][value="{target.pk}"]')
    page.select_option('select[name="action"]', "refresh_tokens")
    page.click('button[name="index"]')
    success = page.locator(".messagelist .success")
    success.wait_for()
    assert success.inner_text() == "Refreshed the tokens of 1 portal: 12345678."
    target.refresh_from_db()
    assert target.access_token != before
    assert target.last_refreshed_at is not None
    row = page.locator("#result_list tbody tr", has_text="demo-company.hubspot.com")
    assert row.locator(".hubspot-badge").inner_text() == "active"
    page.screenshot(path=str(screenshots / "admin-connections-refreshed.png"), full_page=True)

    page.check(f'input[name="_selected_action"][value="{portals[1].pk}"]')
    page.select_option('select[name="action"]', "disconnect")
    page.click('button[name="index"]')
    page.wait_for_selector("text=Disconnect this HubSpot portal?")
    page.screenshot(path=str(screenshots / "admin-disconnect-confirmation.png"), full_page=True)
    page.click("text=No, take me back")
    page.wait_for_url(f"**{changelist}")
    assert HubSpotConnection.objects.get(pk=portals[1].pk).status == "active"

    page.click("#result_list a:text('globex.hubspot.com')")
    page.wait_for_selector("text=Granted scopes")
    assert page.locator("a:text('Reconnect')").count() == 1
    assert page.locator("ul.hubspot-scopes li").count() == 2
    page.screenshot(path=str(screenshots / "admin-connection-detail.png"), full_page=True)

    page.emulate_media(color_scheme="dark")
    page.reload()
    page.screenshot(path=str(screenshots / "admin-connection-detail-dark.png"), full_page=True)
    page.goto(f"{live_server.url}{changelist}")
    page.screenshot(path=str(screenshots / "admin-connections-list-dark.png"), full_page=True)
    html = page.content()
    for connection in portals:
        connection.refresh_from_db()
        for token in (connection.access_token, connection.refresh_token):
            assert not token or token[:12] not in html
