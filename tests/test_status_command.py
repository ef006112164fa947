"""manage.py hubspot_status (what needs attention) and manage.py prune_hubspot_events."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from hubspot_connect.events import record
from hubspot_connect.models import (
    EventKind,
    HubSpotConnection,
    HubSpotConnectionEvent,
    HubSpotRefreshHour,
)
from hubspot_connect.testing import FakeHubSpot
from tests.helpers import MakeConnection

pytestmark = pytest.mark.django_db


def run(command: str, *args: str) -> tuple[int, str, str]:
    stdout, stderr = StringIO(), StringIO()
    try:
        call_command(command, *args, stdout=stdout, stderr=stderr)
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else -1
        return code, stdout.getvalue(), stderr.getvalue()
    return 0, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def mixed(make_connection: MakeConnection) -> dict[str, HubSpotConnection]:
    now = timezone.now()
    return {
        "healthy": make_connection(1, expires_in=1800, hub_domain="fine.hubspot.com"),
        "failing": make_connection(
            2,
            expires_in=600,
            refresh_failures=3,
            failing_since=now - timedelta(hours=2),
            last_error="HubSpot server error on POST /oauth/2026-03/token: HTTP 503.\nagain",
        ),
        "expired": make_connection(3, expires_in=-60),
        "reauth": make_connection(4, status="needs_reauth", last_error="invalid_grant"),
        "scopes": make_connection(5, scopes=["oauth"]),
        "gone": make_connection(6, status="disconnected", scopes=[], expires_at=None),
    }


def test_lists_what_needs_attention_and_exits_1(mixed: dict[str, HubSpotConnection]) -> None:
    code, out, err = run("hubspot_status")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == [
        "portal",
        "hub",
        "domain",
        "status",
        "problems",
        "failing",
        "since",
        "last",
        "error",
    ]
    listed = {int(line.split()[0]) for line in lines[1:-1]}
    assert listed == {2, 3, 4, 5}
    failing = next(line for line in lines if line.startswith("2 "))
    assert "failing" in failing
    assert "HubSpot server error on POST /oauth/2026-03/token: HTTP 503. again" in failing
    assert mixed["failing"].failing_since is not None
    assert mixed["failing"].failing_since.isoformat(timespec="seconds") in failing
    assert "needs re-auth" in next(line for line in lines if line.startswith("4 "))
    assert "missing scopes" in next(line for line in lines if line.startswith("5 "))
    assert "expired" in next(line for line in lines if line.startswith("3 "))
    assert lines[-1] == "4 connection(s) need attention."
    assert err == ""
    for row in mixed.values():
        assert row.access_token not in out
        assert row.refresh_token not in out


def test_all_lists_every_connection(mixed: dict[str, HubSpotConnection]) -> None:
    code, out, _ = run("hubspot_status", "--all")
    assert code == 1
    assert {int(line.split()[0]) for line in out.splitlines()[1:-1]} == {1, 2, 3, 4, 5, 6}


def test_json_for_tools(mixed: dict[str, HubSpotConnection]) -> None:
    code, out, _ = run("hubspot_status", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["healthy"] is False
    assert data["attention"] == 4
    assert data["credentials_rejected"] is None
    rows = {row["portal_id"]: row for row in data["connections"]}
    assert set(rows) == {2, 3, 4, 5}
    assert rows[2]["problems"] == ["failing"]
    assert rows[2]["refresh_failures"] == 3
    assert rows[5]["missing_scopes"] == ["crm.objects.contacts.read"]
    assert rows[4]["problems"] == ["needs_reauth"]
    assert rows[3]["problems"] == ["expired"]
    assert "access_token" not in out
    assert run("hubspot_status", "--json", "--all")[1].count('"portal_id"') == 6


def test_all_healthy_exits_0(make_connection: MakeConnection) -> None:
    make_connection(1)
    make_connection(2, status="disconnected", expires_at=None)
    code, out, err = run("hubspot_status")
    assert (code, out, err) == (0, "All HubSpot connections are healthy.\n", "")
    code, out, _ = run("hubspot_status", "--json")
    assert code == 0
    assert json.loads(out) == {
        "healthy": True,
        "attention": 0,
        "credentials_rejected": None,
        "connections": [],
    }
    assert run("hubspot_status", "--all")[0] == 0


def test_shows_the_last_rejection_of_the_apps_credentials(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, settings: Any
) -> None:
    row = make_connection(1, expires_in=60)
    settings.HUBSPOT_CLIENT_SECRET = "wrong"
    assert run("refresh_hubspot_tokens", "--concurrency", "1")[0] == 2
    code, out, err = run("hubspot_status")
    assert code == 1  # no refresh has succeeded since
    assert "check HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET" in err
    assert "no refresh has succeeded since: HubSpot rejected POST" in err
    data = json.loads(run("hubspot_status", "--json")[1])
    assert data["healthy"] is False
    assert data["credentials_rejected"]["current"] is True
    assert "invalid_client" in data["credentials_rejected"]["message"]

    settings.HUBSPOT_CLIENT_SECRET = "test-client-secret-8d1f0c"  # fixed
    assert run("refresh_hubspot_tokens", "--concurrency", "1")[0] == 0
    code, out, err = run("hubspot_status")
    assert code == 0
    assert "HubSpot last refused the app's credentials at" in out
    assert "refreshes have succeeded since" in out
    assert err == ""
    assert (
        json.loads(run("hubspot_status", "--json")[1])["credentials_rejected"]["current"] is False
    )
    assert row.refresh_token not in out + err


def test_help_is_one_sentence() -> None:
    from hubspot_connect.management.commands import hubspot_status, prune_hubspot_events

    for module in (hubspot_status, prune_hubspot_events):
        text = module.Command.help
        assert text.endswith(".")
        assert ". " not in text


# -- prune_hubspot_events ------------------------------------------------------------------


def test_prune_deletes_old_history(make_connection: MakeConnection) -> None:
    connection = make_connection()
    now = timezone.now()
    for days in (10, 100):
        event = record(EventKind.REFRESH_FAILED, connection)
        assert event is not None
        HubSpotConnectionEvent.objects.filter(pk=event.pk).update(
            created_at=now - timedelta(days=days)
        )
        HubSpotRefreshHour.objects.create(hour=now - timedelta(days=days), refreshed=1)
    assert run("prune_hubspot_events", "--dry-run") == (
        0,
        "would delete 1 event(s) and 1 hourly count(s) older than 90 day(s)\n",
        "",
    )
    assert HubSpotConnectionEvent.objects.count() == 2
    assert run("prune_hubspot_events")[1] == (
        "deleted 1 event(s) and 1 hourly count(s) older than 90 day(s)\n"
    )
    assert run("prune_hubspot_events", "--days", "5")[1].startswith("deleted 1 event(s)")
    assert not HubSpotConnectionEvent.objects.exists()
    assert not HubSpotRefreshHour.objects.exists()


def test_prune_follows_the_retention_setting(
    make_connection: MakeConnection, settings: Any
) -> None:
    connection = make_connection()
    event = record(EventKind.CONNECTED, connection)
    assert event is not None
    HubSpotConnectionEvent.objects.filter(pk=event.pk).update(
        created_at=timezone.now() - timedelta(days=20)
    )
    settings.HUBSPOT_EVENT_RETENTION = 30
    assert run("prune_hubspot_events")[1].startswith("deleted 0 event(s)")
    settings.HUBSPOT_EVENT_RETENTION = 14
    assert run("prune_hubspot_events")[1] == (
        "deleted 1 event(s) and 0 hourly count(s) older than 14 day(s)\n"
    )


@pytest.mark.parametrize("days", ["0", "-3", "x"])
def test_prune_refuses_bad_days(days: str) -> None:
    with pytest.raises(CommandError):
        call_command("prune_hubspot_events", "--days", days)
