"""hubspot_connect.batch: refresh_expiring_tokens, its summary and backoff."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings

from hubspot_connect.batch import (
    FAILED,
    REFRESHED,
    REJECTED,
    SKIPPED,
    WOULD_REFRESH,
    RefreshSummary,
    backoff_delay,
    refresh_expiring_tokens,
)
from hubspot_connect.connect import disconnect_connection
from hubspot_connect.models import HubSpotConnection, HubSpotConnectionEvent, HubSpotRefreshHour
from hubspot_connect.testing import FakeHubSpot
from tests.helpers import OTHER_KEY, MakeConnection, stored

pytestmark = pytest.mark.django_db


def token_posts(fake: FakeHubSpot) -> int:
    return sum(1 for method, path, _ in fake.requests if path.endswith("/token"))


def test_summary_line() -> None:
    summary = RefreshSummary(refreshed=3, skipped=2, needs_reauth=1, failed=4, awaiting_reauth=5)
    assert str(summary) == (
        "refreshed 3, skipped 2 (refreshed elsewhere), needs re-auth 1, failed 4; "
        "5 portal(s) await reconnection"
    )
    assert not summary.ok
    assert RefreshSummary(refreshed=1, skipped=1, awaiting_reauth=2).ok
    assert not RefreshSummary(needs_reauth=1).ok
    assert str(RefreshSummary(dry_run=True, selected=7)).startswith("would refresh 7;")


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    for attempt in range(6):
        delays = {backoff_delay(attempt, None, base=1.0, cap=30.0) for _ in range(20)}
        ceiling = min(30.0, 2.0**attempt)
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1  # jitter
    assert backoff_delay(0, 12.0, base=1.0, cap=30.0) == 12.0
    assert backoff_delay(0, 500.0, base=1.0, cap=30.0) == 60.0  # bounded
    assert backoff_delay(5000, None, base=1.0, cap=30.0) <= 30.0  # no overflow


def test_batch_refreshes_only_active_connections_that_expire(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    due = make_connection(1, expires_in=600)
    fresh = make_connection(2, expires_in=1700)
    make_connection(3, expires_in=60, status="needs_reauth")
    make_connection(4, expires_in=60, status="disconnected")
    no_expiry = make_connection(5, expires_in=0, expires_at=None)

    summary = refresh_expiring_tokens(within=timedelta(seconds=900), concurrency=1)

    assert (summary.refreshed, summary.skipped, summary.failed, summary.needs_reauth) == (
        2,
        0,
        0,
        0,
    )
    assert summary.awaiting_reauth == 1
    assert summary.ok
    assert stored(due).access_token != due.access_token
    assert stored(no_expiry).expires_at is not None
    assert stored(fresh).access_token == fresh.access_token
    assert fake_hubspot.refresh_calls() == 2


def test_batch_portal_filter_and_force(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    one = make_connection(1, expires_in=1700)
    two = make_connection(2, expires_in=1700)
    summary = refresh_expiring_tokens(portals=[1], force=True, concurrency=1)
    assert summary.refreshed == 1
    assert stored(one).access_token != one.access_token
    assert stored(two).access_token == two.access_token


def test_batch_dry_run_changes_nothing(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    make_connection(1, expires_in=60)
    make_connection(2, expires_in=120)
    make_connection(3, status="needs_reauth")
    seen: list[tuple[int, str]] = []
    summary = refresh_expiring_tokens(
        dry_run=True, progress=lambda item, outcome, error: seen.append((item.portal_id, outcome))
    )
    assert seen == [(1, WOULD_REFRESH), (2, WOULD_REFRESH)]
    assert (summary.selected, summary.refreshed, summary.awaiting_reauth) == (2, 0, 1)
    assert fake_hubspot.requests == []


def test_batch_retries_transient_failures_with_backoff(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    make_connection(expires_in=60)
    fake_hubspot.fail("status", status=503, times=2)
    sleeps: list[float] = []
    summary = refresh_expiring_tokens(
        concurrency=1, retries=3, backoff_base=0.5, backoff_cap=4, sleep=sleeps.append
    )
    assert summary.refreshed == 1
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_batch_honours_retry_after(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    make_connection(expires_in=60)
    fake_hubspot.fail("status", status=429, retry_after=7)
    sleeps: list[float] = []
    summary = refresh_expiring_tokens(concurrency=1, backoff_base=0.01, sleep=sleeps.append)
    assert summary.refreshed == 1
    assert sleeps == [7.0]


def test_batch_gives_up_after_the_retries(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    fake_hubspot.fail("timeout", times=10)
    sleeps: list[float] = []
    outcomes: list[str] = []
    summary = refresh_expiring_tokens(
        concurrency=1,
        retries=2,
        sleep=sleeps.append,
        progress=lambda item, outcome, error: outcomes.append(outcome),
    )
    assert (summary.failed, summary.refreshed) == (1, 0)
    assert not summary.ok
    assert len(sleeps) == 2
    assert outcomes == [FAILED]
    assert stored(connection).refresh_failures == 3


def test_batch_counts_needs_reauth_and_does_not_retry_it(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    make_connection(1, expires_in=60)
    make_connection(2, expires_in=60)
    fake_hubspot.revoke_all(1)
    sleeps: list[float] = []
    summary = refresh_expiring_tokens(concurrency=1, sleep=sleeps.append)
    assert (summary.refreshed, summary.needs_reauth, summary.awaiting_reauth) == (1, 1, 1)
    assert not summary.ok
    assert sleeps == []
    again = refresh_expiring_tokens(concurrency=1)
    assert (again.refreshed, again.needs_reauth, again.awaiting_reauth) == (0, 0, 1)
    assert again.ok


@override_settings(HUBSPOT_CLIENT_SECRET="not-the-secret-hubspot-knows")
def test_a_rejected_client_stops_the_run_and_is_recorded_once(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    rows = [make_connection(portal, expires_in=60 + portal) for portal in range(1, 6)]
    sleeps: list[float] = []
    outcomes: list[tuple[Any, str]] = []
    summary = refresh_expiring_tokens(
        concurrency=1,
        sleep=sleeps.append,
        progress=lambda item, outcome, error: outcomes.append((item.portal_id, outcome)),
    )
    assert token_posts(fake_hubspot) == 1  # the first answer stops the run
    assert sleeps == []
    assert outcomes == [(1, REJECTED)]
    assert (summary.refreshed, summary.failed, summary.needs_reauth) == (0, 0, 0)
    assert "invalid_client" in summary.credentials_rejected
    assert "not-the-secret" not in summary.credentials_rejected
    assert not summary.ok
    assert summary.exit_status == 2
    assert str(summary).startswith(
        "stopped: HubSpot rejected the app's credentials (invalid_client), check "
        "HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET; refreshed 0,"
    )
    for row in rows:  # no connection was marked
        now = stored(row)
        assert (now.status, now.refresh_failures, now.last_error, now.failing_since) == (
            "active",
            0,
            "",
            None,
        )
        assert now.access_token == row.access_token
    event = HubSpotConnectionEvent.objects.get()
    assert (event.connection_id, event.kind, event.http_status) == (
        None,
        "credentials_rejected",
        400,
    )
    assert "invalid_client" in event.message
    assert not HubSpotRefreshHour.objects.exists()


@pytest.mark.django_db(transaction=True)
@override_settings(HUBSPOT_CLIENT_SECRET="not-the-secret-hubspot-knows")
@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_rejected_client_stops_every_thread(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, concurrency: int
) -> None:
    from django.db import connection

    if concurrency > 1 and connection.vendor == "sqlite":
        # The suite's in-memory SQLite database locks whole tables across threads and
        # does not wait: the threaded case runs on PostgreSQL and MariaDB.
        pytest.skip("threads need a database with real concurrent connections")
    for portal in range(1, 41):
        make_connection(portal, expires_in=60)
    summary = refresh_expiring_tokens(concurrency=concurrency, chunk_size=10)
    assert summary.exit_status == 2
    # Each thread may have had one request in flight when the first answer came back.
    assert 1 <= token_posts(fake_hubspot) <= concurrency
    assert HubSpotConnectionEvent.objects.filter(kind="credentials_rejected").count() == 1
    assert not HubSpotConnection.objects.filter(refresh_failures__gt=0).exists()


def test_an_outage_writes_one_event_per_portal_not_one_per_attempt(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    for portal in range(1, 11):
        make_connection(portal, expires_in=60)
    fake_hubspot.fail("status", status=503, times=1000)
    for _run in range(2):
        summary = refresh_expiring_tokens(concurrency=1, retries=2, sleep=lambda s: None)
        assert summary.failed == 10
        assert summary.exit_status == 1
    assert HubSpotConnectionEvent.objects.filter(kind="refresh_failed").count() == 10
    assert HubSpotConnectionEvent.objects.count() == 10
    assert set(HubSpotConnection.objects.values_list("refresh_failures", flat=True)) == {6}
    (hour,) = HubSpotRefreshHour.objects.all()
    assert (hour.refreshed, hour.failed) == (0, 60)  # every attempt counted, in one row


def test_a_run_counts_its_refreshes_per_hour_once_per_chunk(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    for portal in range(1, 6):
        make_connection(portal, expires_in=60)
    fake_hubspot.revoke_all(5)
    summary = refresh_expiring_tokens(concurrency=1, chunk_size=2)
    assert (summary.refreshed, summary.needs_reauth) == (4, 1)
    (hour,) = HubSpotRefreshHour.objects.all()
    assert (hour.refreshed, hour.failed, hour.needs_reauth) == (4, 0, 1)
    assert list(HubSpotConnectionEvent.objects.values_list("kind", flat=True)) == ["needs_reauth"]
    assert sorted(HubSpotConnection.objects.values_list("refresh_count", flat=True)) == [
        0,
        1,
        1,
        1,
        1,
    ]


def test_batch_skips_a_row_disconnected_meanwhile(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    first = make_connection(1, expires_in=60)
    second = make_connection(2, expires_in=120)
    outcomes: list[tuple[int, str]] = []

    def progress(item: Any, outcome: str, error: Any) -> None:
        outcomes.append((item.portal_id, outcome))
        if item.portal_id == first.portal_id:
            disconnect_connection(stored(second), revoke=False)

    summary = refresh_expiring_tokens(concurrency=1, progress=progress)
    assert outcomes == [(1, REFRESHED), (2, SKIPPED)]
    assert (summary.refreshed, summary.skipped) == (1, 1)
    assert summary.ok


def test_batch_isolates_a_row_that_cannot_be_decrypted(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, settings: Any
) -> None:
    good = make_connection(1, expires_in=60)
    with override_settings(FIELD_ENCRYPTION_KEY=OTHER_KEY):
        bad = make_connection(2, expires_in=60)
    outcomes: list[tuple[Any, str]] = []
    summary = refresh_expiring_tokens(
        concurrency=1, progress=lambda item, outcome, error: outcomes.append((item, outcome))
    )
    assert (summary.refreshed, summary.failed) == (1, 1)
    assert (bad.pk, FAILED) in outcomes
    assert stored(good).access_token != good.access_token
    failed = HubSpotConnection.objects.filter(pk=bad.pk).values(
        "refresh_failures", "last_error", "failing_since"
    )
    assert failed[0]["refresh_failures"] == 1
    assert failed[0]["failing_since"] is not None
    assert "FIELD_ENCRYPTION_KEY" in failed[0]["last_error"]
    event = HubSpotConnectionEvent.objects.get()
    assert (event.connection_id, event.kind) == (bad.pk, "refresh_failed")
    assert "FIELD_ENCRYPTION_KEY" in event.message
    again = refresh_expiring_tokens(concurrency=1)
    assert again.failed == 1
    assert HubSpotConnectionEvent.objects.count() == 1  # the same error: no second event
    kept = HubSpotConnection.objects.filter(pk=bad.pk).values_list("failing_since", flat=True)
    assert list(kept) == [failed[0]["failing_since"]]  # the same streak


def test_batch_counts_an_unexpected_error_as_failed(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, caplog: Any
) -> None:
    make_connection(expires_in=60)

    def explode(endpoint: str) -> None:
        raise RuntimeError("boom")

    fake_hubspot.fault_plan = explode
    summary = refresh_expiring_tokens(concurrency=1)
    assert summary.failed == 1
    assert "unexpected error" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_batch_threads_survive_a_failing_progress_callback(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    # Threads on the in-memory test database may meet "table is locked" (shared-cache
    # SQLite); what matters here is that every row is processed and nothing hangs.
    # tests/test_concurrency.py runs the threads on file SQLite and PostgreSQL.
    for portal in range(1, 11):
        make_connection(portal, expires_in=60)

    def progress(item: Any, outcome: str, error: Any) -> None:
        raise OSError("stdout is gone")

    summary = refresh_expiring_tokens(concurrency=2, progress=progress)
    assert summary.done == 10
    assert max(fake_hubspot.refresh_calls_by_token().values()) == 1


def test_batch_dry_run_without_progress(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    make_connection(expires_in=60)
    summary = refresh_expiring_tokens(dry_run=True)
    assert (summary.selected, summary.refreshed) == (1, 0)
    assert fake_hubspot.requests == []
