"""manage.py refresh_hubspot_tokens."""

from __future__ import annotations

import logging
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from hubspot_connect.models import HubSpotConnection
from hubspot_connect.testing import FakeHubSpot

pytestmark = pytest.mark.django_db

MakeConnection = Callable[..., HubSpotConnection]
SUMMARY = "refreshed {}, skipped {} (refreshed elsewhere), needs re-auth {}, failed {}"


def run(*args: str) -> tuple[int, str, str]:
    """Run the command in this thread (the in-memory test database is not for threads)."""
    stdout, stderr = StringIO(), StringIO()
    try:
        call_command(
            "refresh_hubspot_tokens", "--concurrency", "1", *args, stdout=stdout, stderr=stderr
        )
    except SystemExit as exit:
        code = exit.code
        assert isinstance(code, int)
        return code, stdout.getvalue(), stderr.getvalue()
    return 0, stdout.getvalue(), stderr.getvalue()


def token_posts(fake: FakeHubSpot) -> int:
    return sum(1 for method, path, _ in fake.requests if path.endswith("/token"))


def token(connection: HubSpotConnection) -> str:
    return HubSpotConnection.objects.get(pk=connection.pk).access_token


def test_refreshes_what_expires_within_the_default_window(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    due = make_connection(1, expires_in=800)
    later = make_connection(2, expires_in=1000)
    code, out, err = run()
    assert code == 0
    assert SUMMARY.format(1, 0, 0, 0) + "; 0 portal(s) await reconnection" in out
    assert err == ""
    assert token(due) != due.access_token
    assert token(later) == later.access_token


def test_within_portal_and_force(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    one = make_connection(1, expires_in=1700)
    two = make_connection(2, expires_in=1700)
    three = make_connection(3, expires_in=1700)
    assert run("--within", "60")[1].startswith(SUMMARY.format(0, 0, 0, 0))
    code, out, _ = run("--within", "1800", "--portal", "1", "--portal", "3")
    assert (code, out.splitlines()[-1].split(";")[0]) == (0, SUMMARY.format(2, 0, 0, 0))
    assert token(one) != one.access_token
    assert token(two) == two.access_token
    assert token(three) != three.access_token
    code, out, _ = run("--force", "--portal", "2")
    assert SUMMARY.format(1, 0, 0, 0) in out
    assert token(two) != two.access_token


def test_dry_run_lists_and_changes_nothing(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    first = make_connection(1, expires_in=60)
    make_connection(2, expires_in=120)
    code, out, _ = run("--dry-run")
    assert code == 0
    assert "portal 1: would refresh" in out
    assert "portal 2: would refresh" in out
    assert "would refresh 2; 0 portal(s) await reconnection" in out
    assert token(first) == first.access_token
    assert fake_hubspot.requests == []


def test_failures_exit_1_and_go_to_stderr(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    fake_hubspot.fail("status", status=503, times=5)
    code, out, err = run("--retries", "0")
    assert code == 1
    assert SUMMARY.format(0, 0, 0, 1) in out
    assert "portal 12345678: failed: HubSpot server error" in err
    assert connection.refresh_token not in out + err
    assert token_posts(fake_hubspot) == 1


def test_rejected_credentials_stop_the_run_and_exit_2(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, settings: Any
) -> None:
    rows = [make_connection(portal, expires_in=60) for portal in (1, 2, 3)]
    settings.HUBSPOT_CLIENT_SECRET = "a-secret-hubspot-does-not-know"
    code, out, err = run("--retries", "3")
    assert code == 2
    assert token_posts(fake_hubspot) == 1
    assert "check HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET" in err
    assert "HubSpot said: HubSpot rejected POST /oauth/2026-03/token with HTTP 400" in err
    assert "portal 1: credentials rejected" in err
    assert out.startswith("stopped: HubSpot rejected the app's credentials (invalid_client)")
    assert "a-secret-hubspot-does-not-know" not in out + err
    assert not HubSpotConnection.objects.exclude(refresh_failures=0).exists()
    assert [token(row) for row in rows] == [row.access_token for row in rows]


def test_retries_with_backoff(make_connection: MakeConnection, fake_hubspot: FakeHubSpot) -> None:
    make_connection(expires_in=60)
    fake_hubspot.fail("status", status=429, times=2)
    code, out, _ = run("--retries", "2", "--backoff-base", "0.001")
    assert code == 0
    assert SUMMARY.format(1, 0, 0, 0) in out
    assert token_posts(fake_hubspot) == 3


def test_needs_reauth_exits_1_and_is_counted(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    make_connection(1, expires_in=60)
    make_connection(2, expires_in=60)
    fake_hubspot.revoke_all(2)
    code, out, _ = run()
    assert code == 1
    assert "portal 2: needs re-auth: HubSpot rejected" in out
    assert SUMMARY.format(1, 0, 1, 0) + "; 1 portal(s) await reconnection" in out
    # The next run leaves it alone: nothing failed in that run, so it exits 0.
    code, out, _ = run()
    assert code == 0
    assert SUMMARY.format(0, 0, 0, 0) + "; 1 portal(s) await reconnection" in out


def test_verbosity(make_connection: MakeConnection, fake_hubspot: FakeHubSpot) -> None:
    make_connection(1, expires_in=60)
    assert run("-v", "0") == (0, "", "")
    make_connection(2, expires_in=60)
    code, out, _ = run("-v", "2")
    assert code == 0
    assert "portal 2: refreshed" in out
    assert "portal 1: refreshed" not in out  # refreshed by the first run: not due


def test_quiet_still_reports_failures(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    make_connection(expires_in=60)
    fake_hubspot.fail("timeout")
    code, out, _ = run("-v", "0", "--retries", "0")
    assert code == 1
    assert SUMMARY.format(0, 0, 0, 1) in out


def test_progress_count_every_hundred(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    for portal in range(1, 102):
        make_connection(portal, expires_in=60)
    code, out, _ = run()
    assert code == 0
    assert out.count("connections processed") == 1
    assert "... 100 connections processed" in out
    assert SUMMARY.format(101, 0, 0, 0) in out


def test_summary_is_logged(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, caplog: Any
) -> None:
    make_connection(expires_in=60)
    with caplog.at_level(logging.INFO, logger="hubspot_connect"):
        run("-v", "0")
    assert any(
        record.name == "hubspot_connect" and SUMMARY.format(1, 0, 0, 0) in record.getMessage()
        for record in caplog.records
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--concurrency", "0"],
        ["--within", "-1"],
        ["--retries", "-1"],
        ["--within", "soon"],
        ["--portal", "acme"],
        ["--backoff-base", "-1"],
    ],
)
def test_bad_arguments(db: None, args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("refresh_hubspot_tokens", *args, stdout=StringIO(), stderr=StringIO())


def test_help_is_one_sentence() -> None:
    from hubspot_connect.management.commands.refresh_hubspot_tokens import Command

    assert Command.help.count(".") == 1
