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

from hubspot_connect.models import (
    EventKind,
    HubSpotConnection,
    HubSpotConnectionEvent,
    HubSpotRefreshHour,
)
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
    assert page.locator("button:text('Reconnect')").count() == 1
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


def _seed_history(portals: list[HubSpotConnection], staff_user: User) -> None:
    """Two days of refreshes per hour (an outage included) and a story per portal."""
    now = timezone.now()
    current = now.replace(minute=0, second=0, microsecond=0)
    HubSpotRefreshHour.objects.bulk_create(
        HubSpotRefreshHour(
            hour=current - timedelta(hours=ago),
            refreshed=0 if ago in (20, 21) else 180 + (ago * 37) % 60,
            failed={19: 40, 20: 190, 21: 185, 22: 12}.get(ago, 1 if ago % 9 == 0 else 0),
            needs_reauth=1 if ago in (5, 30) else 0,
        )
        for ago in range(48)
    )
    rejected = portals[2]
    story = [
        (47, EventKind.CONNECTED, "", None, "", staff_user),
        (
            21,
            EventKind.REFRESH_FAILED,
            "HubSpot server error on POST /oauth/2026-03/token: "
            "HTTP 503 (correlation id 5f0c1e2a-77b4-4f4e-9d61-1a2b3c4d5e6f).",
            503,
            "5f0c1e2a-77b4-4f4e-9d61-1a2b3c4d5e6f",
            None,
        ),
        (19, EventKind.RECOVERED, "Refreshed again after 6 failed attempt(s).", None, "", None),
        (
            9,
            EventKind.SCOPES_CHANGED,
            "No longer crm.objects.contacts.read; missing required crm.objects.contacts.read.",
            None,
            "",
            None,
        ),
        (
            2,
            EventKind.NEEDS_REAUTH,
            "HubSpot rejected POST /oauth/2026-03/token with HTTP 400: "
            "invalid_grant: missing or unknown token",
            400,
            "",
            None,
        ),
    ]
    HubSpotConnectionEvent.objects.bulk_create(
        HubSpotConnectionEvent(
            connection=rejected,
            kind=kind,
            created_at=now - timedelta(hours=ago),
            message=message,
            http_status=status,
            correlation_id=correlation,
            actor=actor,
        )
        for ago, kind, message, status, correlation, actor in story
    )
    HubSpotConnection.objects.filter(pk=portals[1].pk).update(
        refresh_failures=3, failing_since=now - timedelta(minutes=40), scopes=["oauth"]
    )


def test_staff_see_the_health_summary_and_a_connection_history(
    live_server: Any,
    portals: list[HubSpotConnection],
    staff_user: User,
    page: Any,
    screenshots: Path,
    fake_hubspot: FakeHubSpot,
) -> None:
    _seed_history(portals, staff_user)
    changelist = reverse("admin:hubspot_connect_hubspotconnection_changelist")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}{reverse('admin:login')}?next={changelist}")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{changelist}")

    summary = page.locator("section.hubspot-summary")
    counts = summary.locator("a.hubspot-count").all_inner_texts()
    assert [" ".join(text.split()) for text in counts] == [
        "1 active",
        "1 expiring soon",
        "1 failing",
        "1 need re-auth",
        "1 missing scopes",
        "1 disconnected",
    ]
    chart = summary.locator("svg[role=img]")
    assert chart.locator("g.hubspot-bar").count() == 48
    box = chart.bounding_box()
    assert box["width"] > 600
    assert box["height"] == 90
    # The outage hours' failure bars are drawn in the admin's error colour.
    failed = chart.locator("rect.hubspot-failed").first
    light_fill = failed.evaluate("node => getComputedStyle(node).fill")
    assert light_fill == "rgb(186, 33, 33)"  # --error-fg, light theme
    description = chart.locator("desc").text_content()
    assert description.startswith("In the last 48 hours:")
    summary.locator("details summary").click()
    assert summary.locator("details table tbody tr").count() == 48
    summary.locator("details summary").click()
    page.screenshot(path=str(screenshots / "admin-health-summary.png"), full_page=True)

    page.emulate_media(color_scheme="dark")
    page.reload()
    dark_fill = page.locator("rect.hubspot-failed").first.evaluate(
        "node => getComputedStyle(node).fill"
    )
    assert dark_fill == "rgb(227, 95, 95)"  # --error-fg, dark theme
    body = page.locator("body").evaluate("node => getComputedStyle(node).backgroundColor")
    count_bg = page.locator("a.hubspot-count").first.evaluate(
        "node => getComputedStyle(node).backgroundColor"
    )
    assert body == "rgb(18, 18, 18)"
    assert count_bg != "rgb(248, 248, 248)"  # not the light theme's colour on a dark page
    page.screenshot(path=str(screenshots / "admin-health-summary-dark.png"), full_page=True)

    # The summary's "need re-auth" card lists that portal; its page tells the story.
    page.emulate_media(color_scheme="light")
    page.click("a.hubspot-count:has-text('need re-auth')")
    page.wait_for_url("**status=needs_reauth**")
    assert page.locator("#result_list tbody tr").count() == 1
    page.click("#result_list a:text('globex.hubspot.com')")
    page.wait_for_selector("text=History")
    events = page.locator("ol.hubspot-timeline li")
    assert events.count() == 5
    assert " ".join(events.first.inner_text().split()).count("needs re-auth") == 1
    assert "recovered" in events.nth(2).inner_text()
    assert "by staff" in events.last.inner_text()
    tools = page.locator(".object-tools").inner_text()
    assert "RECONNECT" in tools.upper()
    assert "REFRESH NOW" not in tools.upper()  # needs re-auth: only a reconnect helps
    page.screenshot(path=str(screenshots / "admin-connection-timeline.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.reload()
    page.screenshot(path=str(screenshots / "admin-connection-timeline-dark.png"), full_page=True)

    # An active portal: Refresh now, then Disconnect with the uninstall offered.
    page.emulate_media(color_scheme="light")
    active = portals[1]
    before = HubSpotConnection.objects.get(pk=active.pk).access_token
    page.goto(
        live_server.url
        + reverse("admin:hubspot_connect_hubspotconnection_change", args=[active.pk])
    )
    page.click("button:text('Refresh now')")
    page.locator(".messagelist .success").wait_for()
    assert HubSpotConnection.objects.get(pk=active.pk).access_token != before
    newest = page.locator("ol.hubspot-timeline li").all_inner_texts()[:2]
    assert any("recovered" in text for text in newest)  # it had been failing
    assert any("scopes changed" in text for text in newest)  # and now has every scope
    page.click(".object-tools a:text('Disconnect')")
    page.wait_for_selector("text=Also uninstall the app from the customer's HubSpot account")
    page.screenshot(path=str(screenshots / "admin-disconnect-uninstall.png"), full_page=True)
    page.check("input[name=uninstall]")
    page.click("input[type=submit]")
    page.locator(".messagelist .success").wait_for()
    assert HubSpotConnection.objects.get(pk=active.pk).status == "disconnected"
    kinds = [text.split()[2] for text in page.locator("ol.hubspot-timeline li").all_inner_texts()]
    assert kinds[:2] == ["disconnected", "uninstalled"]
    html = page.content()
    for connection in portals:
        connection.refresh_from_db()
        for token in (connection.access_token, connection.refresh_token):
            assert not token or token[:12] not in html
