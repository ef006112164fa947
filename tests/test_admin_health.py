"""The connection list's health: summary and chart, scope and refresh filters, token lookups.

Query counts of the list are pinned: they stay the same whatever the number of
connections, events and hourly counts.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hubspot_connect.admin import hubspot_portal_url
from hubspot_connect.admin.summary import health_summary
from hubspot_connect.events import record
from hubspot_connect.models import (
    EventKind,
    HubSpotConnection,
    HubSpotConnectionEvent,
    HubSpotRefreshHour,
)
from tests.helpers import MakeConnection
from tests.test_admin import CHANGELIST, client_for, row_html, staff, text

pytestmark = pytest.mark.django_db

HOUR_TABLE = HubSpotRefreshHour._meta.db_table
EVENT_TABLE = HubSpotConnectionEvent._meta.db_table


@pytest.fixture
def health(make_connection: MakeConnection) -> dict[str, HubSpotConnection]:
    """Two healthy portals and one of each problem."""
    now = timezone.now()
    return {
        "fine": make_connection(1, expires_in=3600),
        "fine2": make_connection(2, expires_in=7200, last_refreshed_at=now),
        "expiring": make_connection(3, expires_in=120),
        "failing": make_connection(
            4, expires_in=3600, refresh_failures=2, failing_since=now - timedelta(hours=3)
        ),
        "reauth": make_connection(5, status="needs_reauth"),
        "scopes": make_connection(6, expires_in=3600, scopes=["oauth"]),
        "gone": make_connection(7, status="disconnected", scopes=[], expires_at=None),
    }


def hours(*rows: tuple[int, int, int, int]) -> None:
    """Hourly counts: (hours ago, refreshed, failed, needs re-auth)."""
    current = timezone.now().replace(minute=0, second=0, microsecond=0)
    HubSpotRefreshHour.objects.bulk_create(
        HubSpotRefreshHour(
            hour=current - timedelta(hours=ago), refreshed=ok, failed=bad, needs_reauth=reauth
        )
        for ago, ok, bad, reauth in rows
    )


# -- the summary -------------------------------------------------------------------------------


def test_summary_counts_each_kind_of_problem(
    admin_client: Client, health: dict[str, HubSpotConnection]
) -> None:
    counts = health_summary()["counts"]
    assert {key: counts[key] for key in ("total", "active", "expiring", "failing")} == {
        "total": 7,
        "active": 4,  # 1, 2, 4 and 6: active, not expiring
        "expiring": 1,
        "failing": 1,
    }
    assert (counts["needs_reauth"], counts["missing_scopes"], counts["disconnected"]) == (1, 1, 1)
    html = text(admin_client.get(CHANGELIST))
    summary = html[html.index('<section class="hubspot-summary"') : html.index("</section>")]
    for link, number, label in [
        ("?status=active", 4, "active"),
        ("?status=expiring", 1, "expiring soon"),
        ("?refresh=failing", 1, "failing"),
        ("?status=needs_reauth", 1, "need re-auth"),
        ("?scopes=missing", 1, "missing scopes"),
        ("?status=disconnected", 1, "disconnected"),
    ]:
        assert re.search(
            rf'<a href="{re.escape(link)}" class="hubspot-count[^"]*">'
            rf'<span class="hubspot-number">{number}</span> {label}</a>',
            summary,
        ), label
    # Each number is what its link lists.
    for link, number in [
        ({"status": "active"}, 4),
        ({"refresh": "failing"}, 1),
        ({"scopes": "missing"}, 1),
    ]:
        assert admin_client.get(CHANGELIST, link).context["cl"].result_count == number


def test_summary_with_no_connections(admin_client: Client) -> None:
    summary = health_summary()
    assert summary["counts"]["total"] == 0
    assert summary["chart_description"] == "No refreshes in the last 48 hours."
    assert summary["credentials_rejected"] == ""
    html = text(admin_client.get(CHANGELIST))
    assert "No refreshes were counted." in html


def test_summary_is_two_queries_whatever_the_number_of_portals(
    make_connection: MakeConnection,
) -> None:
    make_connection(1)
    with CaptureQueriesContext(db) as few:
        health_summary()
    HubSpotConnection.objects.bulk_create(
        HubSpotConnection(portal_id=100 + n, scopes=["oauth"] if n % 2 else []) for n in range(200)
    )
    hours(*((ago, 10, 1, 0) for ago in range(60)))
    record(EventKind.CREDENTIALS_REJECTED, message="refused")
    with CaptureQueriesContext(db) as many:
        summary = health_summary()
    assert len(few.captured_queries) == len(many.captured_queries) == 2
    assert summary["counts"]["total"] == 201
    assert summary["counts"]["missing_scopes"] == 200


def test_the_chart_shows_48_hours_with_a_text_alternative(
    admin_client: Client, health: dict[str, HubSpotConnection]
) -> None:
    hours((0, 120, 0, 0), (1, 100, 5, 1), (47, 80, 0, 0), (48, 999, 999, 999), (72, 1, 1, 1))
    summary = health_summary()
    bars = summary["bars"]
    assert len(bars) == 48
    assert bars[-1].refreshed == 120
    assert (bars[-2].refreshed, bars[-2].failed, bars[-2].needs_reauth) == (100, 5, 1)
    assert bars[0].refreshed == 80  # 47 hours ago; 48 and more are outside
    assert summary["totals"] == {"refreshed": 300, "failed": 5, "needs_reauth": 1}
    # The tallest hour fills the chart; a few failures stay visible.
    tallest = max(bars, key=lambda bar: bar.total)
    assert sum(height for _css, _y, height in tallest.segments) == pytest.approx(100)
    failed = {css: height for css, _y, height in bars[-2].segments}
    assert failed["failed"] >= 3
    assert failed["reauth"] >= 3
    html = text(admin_client.get(CHANGELIST))
    start = html.index("<svg viewBox")
    svg = html[start : html.index("</svg>", start)]
    assert 'role="img"' in svg
    assert 'aria-labelledby="hubspot-chart-title hubspot-chart-desc"' in svg
    assert (
        '<desc id="hubspot-chart-desc">In the last 48 hours: 300 refreshes succeeded, '
        "5 failed, 1 needed re-auth.</desc>"
    ) in svg
    assert svg.count('<g class="hubspot-bar">') == 48
    assert ": 100 refreshed, 5 failed, 1 needs re-auth</title>" in svg
    table = html[html.index('<details class="hubspot-chart-table">') : html.index("</details>")]
    assert len(re.findall(r"<tr><td>", table)) == 3  # the hours that had refreshes
    assert (
        "<script"
        not in html[html.index('<section class="hubspot-summary"') :].split("</section>")[0]
    )


def test_the_chart_counts_what_refreshes_record(
    make_connection: MakeConnection, fake_hubspot: Any
) -> None:
    from hubspot_connect.batch import refresh_expiring_tokens

    for portal in range(1, 4):
        make_connection(portal, expires_in=60)
    fake_hubspot.revoke_all(3)
    refresh_expiring_tokens(concurrency=1)
    assert health_summary()["totals"] == {"refreshed": 2, "failed": 0, "needs_reauth": 1}


def test_a_current_refusal_of_the_apps_credentials_is_shown(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    row = make_connection(1, last_refreshed_at=timezone.now() - timedelta(hours=1))
    record(EventKind.CREDENTIALS_REJECTED, message="HubSpot rejected POST …: invalid_client")
    html = text(admin_client.get(CHANGELIST))
    assert '<p class="hubspot-alert" role="alert">' in html
    assert "Check HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET" in html
    assert "HubSpot rejected POST …: invalid_client" in html
    # A refresh that succeeded since: the credentials work again.
    HubSpotConnection.objects.filter(pk=row.pk).update(
        last_refreshed_at=timezone.now() + timedelta(seconds=1)
    )
    assert 'class="hubspot-alert"' not in text(admin_client.get(CHANGELIST))


# -- columns and filters -----------------------------------------------------------------------


def test_missing_scopes_badge_and_filter(
    admin_client: Client, health: dict[str, HubSpotConnection], settings: Any
) -> None:
    html = text(admin_client.get(CHANGELIST))
    badge = (
        '<span class="hubspot-badge hubspot-badge-scopes" title="Never granted: '
        'crm.objects.contacts.read. Reconnect to grant them.">missing scopes</span>'
    )
    assert badge in row_html(html, 6)
    # Active, but missing a scope: reconnecting (with the scope now asked) fixes it.
    assert 'name="portal" value="6" class="hubspot-reconnect"' in row_html(html, 6)
    for portal in (1, 2, 7):
        assert "hubspot-badge-scopes" not in row_html(html, portal)

    def listed(**query: str) -> set[int]:
        response = admin_client.get(CHANGELIST, query)
        return {row.portal_id for row in response.context["cl"].result_list}

    assert listed(scopes="missing") == {6}
    assert listed(scopes="granted") == {1, 2, 3, 4, 5}
    settings.HUBSPOT_SCOPES = ["oauth", "crm.objects.contacts.read", "crm.lists.read"]
    assert listed(scopes="missing") == {1, 2, 3, 4, 5, 6}
    assert "hubspot-badge-scopes" in row_html(text(admin_client.get(CHANGELIST)), 1)
    settings.HUBSPOT_SCOPES = []
    assert listed(scopes="missing") == set()
    assert listed(scopes="granted") == {1, 2, 3, 4, 5, 6}


def test_refresh_filter_and_failing_since(
    admin_client: Client, health: dict[str, HubSpotConnection]
) -> None:
    response = admin_client.get(CHANGELIST, {"refresh": "failing"})
    assert [row.portal_id for row in response.context["cl"].result_list] == [4]
    cell = re.search(r'<td class="field-failures">(.*?)</td>', row_html(text(response), 4))
    assert cell
    assert cell.group(1).startswith('2<br><span class="hubspot-quiet">since <time datetime=')
    assert "3 hours ago</time>" in cell.group(1)
    ok = admin_client.get(CHANGELIST, {"refresh": "ok"})
    assert {row.portal_id for row in ok.context["cl"].result_list} == {1, 2, 3, 6}


@pytest.mark.parametrize(
    ("ui_domain", "hublet", "host"),
    [
        ("app-eu1.hubspot.com", "", "app-eu1.hubspot.com"),
        ("app-na2.hubspot.com", "na1", "app-na2.hubspot.com"),
        ("APP.hubspot.com ", "eu1", "app.hubspot.com"),
        ("", "eu1", "app-eu1.hubspot.com"),  # connected before ui_domain was recorded
        ("evil.example", "eu1", "app-eu1.hubspot.com"),
        ("app.hubspot.com/x", "", "app.hubspot.com"),
        ("app.hubspot.com.evil.example", "", "app.hubspot.com"),
        ("javascript:alert(1)//hubspot.com", "", "app.hubspot.com"),
    ],
)
def test_portal_link_uses_the_ui_domain_hubspot_named(
    ui_domain: str, hublet: str, host: str
) -> None:
    connection = HubSpotConnection(portal_id=4242, hublet=hublet, ui_domain=ui_domain)
    assert hubspot_portal_url(connection) == f"https://{host}/settings/4242"


# -- lookups on token columns ------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {"refresh_token__regex": "^gAAAAA"},
        {"refresh_token__startswith": "g"},
        {"refresh_token": "x"},
        {"access_token__contains": "A"},
        {"access_token__isnull": "False"},
        {"access_token__regex": "^.{100}", "status": "active"},
        {"refresh_token__in": "a,b"},
    ],
)
def test_no_lookup_on_a_token_column_is_run(
    health: dict[str, HubSpotConnection], query: dict[str, str], django_user_model: type[User]
) -> None:
    client = client_for(staff("view_hubspotconnection"))
    with CaptureQueriesContext(db) as captured:
        response = client.get(CHANGELIST, query)
    assert response.status_code == 400
    ran = " ".join(entry["sql"] for entry in captured.captured_queries)
    assert "access_token" not in ran
    assert "refresh_token" not in ran
    assert "REGEXP" not in ran.upper()


def test_other_lookups_still_work(
    admin_client: Client, health: dict[str, HubSpotConnection]
) -> None:
    response = admin_client.get(CHANGELIST, {"portal_id__gte": "5"})
    assert response.status_code == 200
    assert {row.portal_id for row in response.context["cl"].result_list} == {5, 6, 7}


# -- query counts ------------------------------------------------------------------------------


def test_list_query_count_is_constant_in_connections_events_and_hours(
    admin_client: Client, django_user_model: type[User], make_connection: MakeConnection
) -> None:
    def add(first: int, count: int) -> None:
        users = django_user_model.objects.bulk_create(
            [django_user_model(username=f"user{n}") for n in range(first, first + count)]
        )
        rows = HubSpotConnection.objects.bulk_create(
            HubSpotConnection(
                portal_id=1000 + n,
                connected_by=user,
                expires_at=timezone.now() + timedelta(minutes=n % 40),
                status=("active", "needs_reauth", "disconnected")[n % 3],
                scopes=["oauth"] if n % 4 else ["oauth", "crm.objects.contacts.read"],
                refresh_failures=n % 2,
            )
            for n, user in zip(range(first, first + count), users, strict=True)
        )
        HubSpotConnectionEvent.objects.bulk_create(
            HubSpotConnectionEvent(connection=row, kind=EventKind.REFRESH_FAILED, actor=user)
            for row, user in zip(rows, users, strict=True)
            for _ in range(3)
        )

    add(0, 3)
    hours((1, 5, 1, 0))
    admin_client.get(CHANGELIST)  # warm caches (content types, permissions)
    with CaptureQueriesContext(db) as few:
        assert admin_client.get(CHANGELIST).status_code == 200
    add(3, 297)
    hours(*((ago, 100, 2, 1) for ago in range(2, 48)))
    record(EventKind.CREDENTIALS_REJECTED, message="refused")
    with CaptureQueriesContext(db) as many:
        response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 300
    assert len(many.captured_queries) == len(few.captured_queries)
    # The summary is computed once: one query on the hourly counts, one that counts portals.
    assert sum(HOUR_TABLE in q["sql"] for q in many.captured_queries) == 1
    assert (
        sum("COUNT(" in q["sql"] and EVENT_TABLE in q["sql"] for q in many.captured_queries) == 1
    )
    for entry in many.captured_queries:  # no page of the admin loads a token
        if "hubspot_connect_hubspotconnection" in entry["sql"]:
            assert "access_token" not in entry["sql"]
            assert "refresh_token" not in entry["sql"]
