"""hubspot_connect.events: the connection history written by refresh, connect and batch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db import DatabaseError, IntegrityError, transaction
from django.db import connection as db
from django.test import override_settings
from django.utils import timezone

from hubspot_connect import events
from hubspot_connect.access import get_access_token
from hubspot_connect.client import get_client
from hubspot_connect.connect import connect_portal, disconnect_connection
from hubspot_connect.exceptions import HubSpotUnavailable, InvalidClient, InvalidGrant
from hubspot_connect.models import (
    EventKind,
    HubSpotConnection,
    HubSpotConnectionEvent,
    HubSpotRefreshHour,
)
from hubspot_connect.refresh import refresh_connection
from hubspot_connect.testing import FakeHubSpot
from tests.helpers import MakeConnection, stored

pytestmark = pytest.mark.django_db

EVENT_TABLE = HubSpotConnectionEvent._meta.db_table
HOUR_TABLE = HubSpotRefreshHour._meta.db_table
REDIRECT = "https://testserver/hubspot/callback/"


def kinds(connection: HubSpotConnection | None = None) -> list[str]:
    """The connection's event kinds, oldest first."""
    rows = HubSpotConnectionEvent.objects.filter(connection=connection).order_by(
        "created_at", "pk"
    )
    return list(rows.values_list("kind", flat=True))


def hour_counts() -> tuple[int, int, int]:
    rows = list(HubSpotRefreshHour.objects.all())
    return (
        sum(row.refreshed for row in rows),
        sum(row.failed for row in rows),
        sum(row.needs_reauth for row in rows),
    )


@pytest.fixture
def refuse_writes_to() -> Iterator[Callable[[str], list[str]]]:
    """Make the database refuse every INSERT/UPDATE on a table (Django's execute wrappers)."""
    refused: list[str] = []
    tables: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if any(table in sql for table in tables) and sql.lstrip().startswith(("INSERT", "UPDATE")):
            refused.append(sql)
            raise DatabaseError("disk full (refused by the test)")
        return execute(sql, params, many, context)

    def refuse(table: str) -> list[str]:
        tables.append(table)
        return refused

    with db.execute_wrapper(wrapper):
        yield refuse


# -- record ------------------------------------------------------------------------------------


def test_record_stores_what_happened_and_who_did_it(make_connection: MakeConnection) -> None:
    connection = make_connection()
    user = User.objects.create_user("ada")
    event = events.record(
        EventKind.DISCONNECTED,
        connection,
        message="x" * 600,
        http_status=503,
        correlation="c" * 80,
        actor=user,
    )
    assert event is not None
    row = HubSpotConnectionEvent.objects.get()
    assert (row.connection_id, row.kind, row.http_status, row.actor_id) == (
        connection.pk,
        "disconnected",
        503,
        user.pk,
    )
    assert len(row.message) == 500
    assert len(row.correlation_id) == 64
    assert str(row).startswith("disconnected (")
    assert events.record(EventKind.CONNECTED, connection, actor=AnonymousUser()).actor_id is None


def test_record_error_keeps_the_status_and_correlation_id(make_connection: MakeConnection) -> None:
    connection = make_connection()
    error = HubSpotUnavailable(
        "HubSpot server error on POST /oauth/2026-03/token: HTTP 502 (correlation id ab-12).",
        http_status=502,
    )
    event = events.record_error(EventKind.REFRESH_FAILED, connection, error)
    assert event is not None
    assert (event.http_status, event.correlation_id) == (502, "ab-12")
    rejected = InvalidClient(
        "refused", error="invalid_client", correlation_id="zz", http_status=400
    )
    app_wide = events.record_error(EventKind.CREDENTIALS_REJECTED, None, rejected)
    assert app_wide is not None
    assert (app_wide.connection_id, app_wide.correlation_id) == (None, "zz")
    assert events.last_credentials_rejection() == app_wide


def test_error_key_ignores_what_changes_on_every_attempt() -> None:
    first = "HubSpot server error on POST /t: HTTP 503; retry after 4 s (correlation id a-1)."
    second = "HubSpot server error on POST /t: HTTP 503; retry after 9.5 s (correlation id b-2)."
    assert events.error_key(first) == events.error_key(second)
    assert events.error_key(first) != events.error_key(first.replace("503", "502"))


def test_a_failed_write_is_logged_and_swallowed_and_spoils_no_transaction(
    make_connection: MakeConnection, refuse_writes_to: Any, caplog: Any
) -> None:
    connection = make_connection()
    refused = refuse_writes_to(EVENT_TABLE)
    with caplog.at_level(logging.ERROR, logger="hubspot_connect"), transaction.atomic():
        assert events.record(EventKind.CONNECTED, connection) is None
        assert events.record_many(EventKind.KEY_ROTATED, [connection.pk]) == 0
        HubSpotConnection.objects.filter(pk=connection.pk).update(hub_domain="still.works")
    assert len(refused) == 2
    assert "Could not record the 'connected' event of portal 12345678" in caplog.text
    assert stored(connection).hub_domain == "still.works"


# -- hourly counts -----------------------------------------------------------------------------


def test_a_tally_writes_one_row_per_hour() -> None:
    tally = events.RefreshTally()
    now = timezone.now().replace(minute=30)
    earlier = now - timedelta(hours=1)
    for _ in range(3):
        tally.add(events.REFRESHED, now)
    tally.add(events.FAILED, now)
    tally.add(events.NEEDS_REAUTH, earlier)
    tally.flush()
    tally.flush()  # nothing left: nothing written twice
    rows = {row.hour: row for row in HubSpotRefreshHour.objects.all()}
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    assert (rows[this_hour].refreshed, rows[this_hour].failed) == (3, 1)
    assert rows[this_hour - timedelta(hours=1)].needs_reauth == 1
    events.add_to_hour(this_hour, {events.REFRESHED: 2, events.FAILED: 0})
    assert HubSpotRefreshHour.objects.get(hour=this_hour).refreshed == 5
    assert str(HubSpotRefreshHour.objects.get(hour=this_hour)).endswith("5 refreshed, 1 failed")


def test_an_hour_created_by_another_process_meanwhile_is_added_to() -> None:
    """The UPDATE finds no row, then the INSERT meets one another process just made."""
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    inserts: list[str] = []

    def other_process_was_first(
        execute: Any, sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        if sql.startswith("INSERT") and HOUR_TABLE in sql:
            inserts.append(sql)
            if len(inserts) == 1:
                raise IntegrityError("UNIQUE constraint failed (raised by the test)")
        return execute(sql, params, many, context)

    with db.execute_wrapper(other_process_was_first):
        events.add_to_hour(hour, {events.REFRESHED: 1})
    assert len(inserts) == 2
    assert HubSpotRefreshHour.objects.get(hour=hour).refreshed == 1


def test_counting_never_raises(refuse_writes_to: Any, caplog: Any) -> None:
    refuse_writes_to(HOUR_TABLE)
    with caplog.at_level(logging.ERROR, logger="hubspot_connect"):
        events.add_to_hour(timezone.now(), {events.REFRESHED: 1})
    assert "Could not count" in caplog.text
    assert not HubSpotRefreshHour.objects.exists()


# -- what a refresh records --------------------------------------------------------------------


def test_a_successful_refresh_is_counted_not_stored(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    for _ in range(3):
        assert refresh_connection(connection, force=True)
    assert kinds(connection) == []
    row = stored(connection)
    assert (row.refresh_count, row.refresh_failures, row.failing_since) == (3, 0, None)
    assert hour_counts() == (3, 0, 0)


def test_a_failure_streak_writes_one_event_until_the_error_changes(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    fake_hubspot.fail("status", status=503, times=3)
    for _ in range(3):
        with pytest.raises(HubSpotUnavailable):
            refresh_connection(connection, force=True)
    row = stored(connection)
    started = row.failing_since
    assert started is not None
    assert row.refresh_failures == 3
    assert kinds(connection) == ["refresh_failed"]
    event = HubSpotConnectionEvent.objects.get()
    assert event.http_status == 503
    assert "HTTP 503" in event.message

    fake_hubspot.fail("timeout", times=2)
    for _ in range(2):
        with pytest.raises(HubSpotUnavailable):
            refresh_connection(connection, force=True)
    assert kinds(connection) == ["refresh_failed", "refresh_failed"]
    assert stored(connection).failing_since == started  # the same streak

    assert refresh_connection(connection, force=True)
    assert kinds(connection) == ["refresh_failed", "refresh_failed", "recovered"]
    recovered = HubSpotConnectionEvent.objects.get(kind="recovered")
    assert recovered.message == "Refreshed again after 5 failed attempt(s)."
    row = stored(connection)
    assert (row.refresh_failures, row.failing_since, row.refresh_count) == (0, None, 1)
    assert hour_counts() == (1, 5, 0)


def test_invalid_grant_records_needs_reauth(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    fake_hubspot.revoke_all()
    with pytest.raises(InvalidGrant):
        refresh_connection(connection)
    assert kinds(connection) == ["needs_reauth"]
    event = HubSpotConnectionEvent.objects.get()
    assert "invalid_grant" in event.message
    assert connection.refresh_token not in event.message
    assert event.http_status == 400
    assert hour_counts() == (0, 0, 1)


def test_a_refresh_that_changes_the_granted_scopes_says_so(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    assert connection.missing_scopes == set()
    with fake_hubspot.store.transaction() as data:  # HubSpot moved the app to other scopes
        data["refresh_tokens"][connection.refresh_token]["scopes"] = ["oauth", "crm.lists.read"]
    assert refresh_connection(connection)
    assert kinds(connection) == ["scopes_changed"]
    assert HubSpotConnectionEvent.objects.get().message == (
        "Granted crm.lists.read; no longer crm.objects.contacts.read; "
        "missing required crm.objects.contacts.read."
    )
    row = stored(connection)
    assert row.missing_scopes == {"crm.objects.contacts.read"}
    assert list(HubSpotConnection.objects.missing_scopes()) == [row]
    assert get_access_token(row.portal_id) == row.access_token  # still works meanwhile
    assert refresh_connection(row, force=True)
    assert kinds(connection) == ["scopes_changed"]  # no change the second time


@override_settings(HUBSPOT_CLIENT_SECRET="not-the-secret-hubspot-knows")
def test_a_rejected_client_records_nothing_on_the_connection(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    with pytest.raises(InvalidClient):
        refresh_connection(connection)
    assert not HubSpotConnectionEvent.objects.exists()
    assert not HubSpotRefreshHour.objects.exists()


def test_a_refresh_survives_a_history_that_cannot_be_written(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, refuse_writes_to: Any
) -> None:
    connection = make_connection(expires_in=60)
    refused = refuse_writes_to(EVENT_TABLE)
    refuse_writes_to(HOUR_TABLE)
    fake_hubspot.fail("status", status=503)
    with pytest.raises(HubSpotUnavailable):
        refresh_connection(connection)
    assert stored(connection).refresh_failures == 1
    assert refresh_connection(connection)
    assert stored(connection).access_token == connection.access_token
    assert stored(connection).refresh_count == 1
    assert any(EVENT_TABLE in sql for sql in refused)
    assert any(HOUR_TABLE in sql for sql in refused)


# -- connect and disconnect --------------------------------------------------------------------


def _connect(fake: FakeHubSpot, user: Any = None, portal_id: int = 12345678) -> HubSpotConnection:
    url = get_client().authorization_url(redirect_uri=REDIRECT, state="state-1")
    code = parse_qs(urlsplit(fake.approve(url, portal_id=portal_id)).query)["code"][0]
    connection, _created = connect_portal(code=code, redirect_uri=REDIRECT, user=user)
    return connection


def test_connect_reconnect_and_disconnect_are_recorded_with_who(
    fake_hubspot: FakeHubSpot,
) -> None:
    grace = User.objects.create_user("grace")
    connection = _connect(fake_hubspot, grace)
    HubSpotConnection.objects.filter(pk=connection.pk).update(
        status="needs_reauth", scopes=["oauth"]
    )
    _connect(fake_hubspot, grace)
    disconnect_connection(stored(connection), actor=grace)
    rows = list(HubSpotConnectionEvent.objects.order_by("created_at", "pk"))
    assert [row.kind for row in rows] == [
        "connected",
        "reconnected",
        "scopes_changed",
        "disconnected",
    ]
    assert {row.actor_id for row in rows} == {grace.pk}
    assert rows[1].message == "Was needs re-auth."
    assert rows[2].message == "Granted crm.objects.contacts.read, crm.objects.deals.read."


# -- pruning -----------------------------------------------------------------------------------


def test_prune_deletes_what_is_older_than_the_retention(make_connection: MakeConnection) -> None:
    connection = make_connection()
    now = timezone.now()
    for days in (1, 89, 91, 200):
        HubSpotConnectionEvent.objects.create(
            connection=connection,
            kind=EventKind.REFRESH_FAILED,
            created_at=now - timedelta(days=days),
        )
        HubSpotRefreshHour.objects.create(hour=now - timedelta(days=days), refreshed=1)
    assert events.prune(dry_run=True) == events.Pruned(events=2, hours=2)
    assert HubSpotConnectionEvent.objects.count() == 4
    assert events.prune(chunk_size=1) == events.Pruned(events=2, hours=2)
    left = HubSpotConnectionEvent.objects.values_list("created_at", flat=True)
    assert all(now - when < timedelta(days=90) for when in left)
    assert HubSpotRefreshHour.objects.count() == 2
    with override_settings(HUBSPOT_EVENT_RETENTION=30):
        assert events.prune() == events.Pruned(events=1, hours=1)
    assert events.prune(days=0) == events.Pruned(events=1, hours=1)


def test_a_hour_row_is_unique() -> None:
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    HubSpotRefreshHour.objects.create(hour=hour)
    with pytest.raises(IntegrityError), transaction.atomic():
        HubSpotRefreshHour.objects.create(hour=hour)


# -- as durable as the tokens ------------------------------------------------------------------


class SiteRolledBack(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_the_history_survives_the_callers_rollback(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    """Written in the same durable block as the tokens, so a caller's rollback keeps both."""
    if db.vendor == "sqlite" and db.is_in_memory_db():
        pytest.skip("needs a database a second connection sees (run with DATABASE_URL)")
    connection = make_connection(expires_in=60)
    fake_hubspot.fail("status", status=503)

    def site_code() -> None:
        with transaction.atomic():
            with pytest.raises(HubSpotUnavailable):
                refresh_connection(connection)
            assert refresh_connection(connection)
            _connect(fake_hubspot, portal_id=87654321)
            raise SiteRolledBack

    with pytest.raises(SiteRolledBack):
        site_code()
    assert kinds(connection) == ["refresh_failed", "recovered"]
    assert hour_counts() == (1, 1, 0)
    assert stored(connection).refresh_count == 1
    other = HubSpotConnection.objects.get(portal_id=87654321)
    assert kinds(other) == ["connected"]
