"""Tokens HubSpot issued survive the caller's rollback; no lock is held for the caller.

Sites set ``ATOMIC_REQUESTS = True`` or call the app inside ``transaction.atomic()``. With
refresh-token rotation (switched on in FakeHubSpot here) a refresh result that is rolled
back is a portal lost: its old refresh token is already spent. These tests need databases
a second connection can see (a SQLite file in WAL mode, PostgreSQL, MariaDB); they run in
``make test-sites`` (SQLite, MariaDB) and in the PostgreSQL run of the suite.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import close_old_connections, connections, router, transaction
from django.dispatch import receiver
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from hubspot_connect.connect import connect_portal
from hubspot_connect.db import LOCK_WAIT
from hubspot_connect.exceptions import NeedsReauth
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.refresh import refresh_connection
from hubspot_connect.signals import hubspot_connected
from hubspot_connect.testing import FakeHubSpot, FakeHubSpotServer
from hubspot_connect.tokens import get_access_token
from tests.sites.conftest import create_user, in_memory_sqlite, start_flow

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

PORTAL = 12345678
REDIRECT = "https://testserver/hubspot/callback/"


class SiteRolledBack(Exception):
    """The site's own code failing inside its transaction."""


@pytest.fixture
def rotating() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(rotate_refresh_tokens=True) as fake:
        yield fake


@pytest.fixture
def file_databases_only() -> None:
    if in_memory_sqlite():
        pytest.skip("needs databases a second connection can see (see the module docstring)")


def alias() -> str:
    """Where the app's rows live: the caller's transaction is opened there."""
    return router.db_for_write(HubSpotConnection)


def in_rolled_back_transaction(work: Callable[[], Any]) -> Any:
    """Run ``work`` in a transaction on the app's database, then roll it back."""
    done: list[Any] = []
    try:
        with transaction.atomic(using=alias()):
            done.append(work())
            raise SiteRolledBack
    except SiteRolledBack:
        pass
    return done[0]


def due_connection(fake: FakeHubSpot, portal_id: int = PORTAL, **fields: Any) -> HubSpotConnection:
    issued = fake.issue_tokens(portal_id, ["oauth", "crm.objects.contacts.read"])
    return HubSpotConnection.objects.create(
        portal_id=portal_id,
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=timezone.now() + timedelta(seconds=30),
        **fields,
    )


def authorization_code(fake: FakeHubSpot) -> str:
    url = (
        f"https://app.hubspot.com/oauth/authorize?client_id={fake.client_id}"
        f"&redirect_uri={REDIRECT}&scope=oauth&state=s"
    )
    return parse_qs(urlsplit(fake.approve(url, portal_id=PORTAL)).query)["code"][0]


@pytest.mark.usefixtures("file_databases_only")
def test_a_refresh_inside_a_rolled_back_transaction_keeps_the_new_tokens(
    rotating: FakeHubSpot,
) -> None:
    old = due_connection(rotating)
    token = in_rolled_back_transaction(lambda: get_access_token(PORTAL))
    row = HubSpotConnection.objects.get(portal_id=PORTAL)
    assert row.access_token == token
    assert row.refresh_token != old.refresh_token
    assert not rotating.is_live_refresh_token(old.refresh_token)
    assert rotating.is_live_refresh_token(row.refresh_token)
    assert row.lease_expires_at is None
    assert row.last_refreshed_at is not None
    # The portal is not lost: its stored refresh token still works.
    assert refresh_connection(row, force=True)
    assert rotating.refresh_calls() == 2


@pytest.mark.usefixtures("file_databases_only")
def test_a_failed_refresh_inside_a_rolled_back_transaction_is_still_recorded(
    rotating: FakeHubSpot,
) -> None:
    due_connection(rotating)
    rotating.revoke_all(PORTAL)

    def reauth() -> str:
        with pytest.raises(NeedsReauth):
            get_access_token(PORTAL)
        return "raised"

    assert in_rolled_back_transaction(reauth) == "raised"
    row = HubSpotConnection.objects.get(portal_id=PORTAL)
    assert row.status == "needs_reauth"
    assert row.refresh_failures == 1
    assert row.lease_expires_at is None


@pytest.mark.usefixtures("file_databases_only")
def test_a_code_exchange_inside_a_rolled_back_transaction_keeps_the_connection(
    rotating: FakeHubSpot,
) -> None:
    code = authorization_code(rotating)
    connection, created = in_rolled_back_transaction(
        lambda: connect_portal(code=code, redirect_uri=REDIRECT)
    )
    assert created
    row = HubSpotConnection.objects.get(portal_id=PORTAL)
    assert row.access_token == connection.access_token
    assert rotating.is_live_refresh_token(row.refresh_token)


@pytest.mark.usefixtures("file_databases_only")
def test_a_view_that_fails_after_a_refresh_keeps_the_tokens(
    rotating: FakeHubSpot, client: Client
) -> None:
    """With ATOMIC_REQUESTS the view's transaction rolls back; the tokens stay."""
    old = due_connection(rotating)
    client.force_login(create_user("site-visitor"))  # the site may require a login
    client.raise_request_exception = False
    response = client.get(reverse("token_then_fail", args=[PORTAL]))
    assert response.status_code == 500
    row = HubSpotConnection.objects.get(portal_id=PORTAL)
    assert row.refresh_token != old.refresh_token
    assert rotating.is_live_refresh_token(row.refresh_token)


@pytest.mark.usefixtures("file_databases_only")
def test_the_callback_keeps_the_connection_when_the_site_fails_after_it(
    rotating: FakeHubSpot,
) -> None:
    user = create_user("durable", perms=("add_hubspotconnection",))
    client = Client(raise_request_exception=False)
    client.force_login(user)

    @receiver(hubspot_connected, weak=False, dispatch_uid="test-site-fails")
    def site_fails(**kwargs: Any) -> None:
        raise SiteRolledBack("the site's own receiver failed")

    try:
        response = start_flow(client, rotating)
    finally:
        hubspot_connected.disconnect(dispatch_uid="test-site-fails")
    assert response.status_code == 500
    row = HubSpotConnection.objects.get(portal_id=PORTAL)
    assert row.connected_by_id == user.pk
    assert rotating.is_live_refresh_token(row.refresh_token)


def _lock_wait(database: Any, seconds: float) -> None:
    """Make ``database``'s next statements give up on a lock after ``seconds``."""
    statements = {
        "postgresql": f"SET lock_timeout = '{int(seconds * 1000)}ms'",
        "mysql": f"SET SESSION innodb_lock_wait_timeout = {max(1, int(seconds))}",
        "sqlite": f"PRAGMA busy_timeout = {int(seconds * 1000)}",
    }
    with database.cursor() as cursor:
        cursor.execute(statements[database.vendor])


@pytest.mark.usefixtures("file_databases_only")
def test_no_lock_is_held_for_the_callers_transaction_while_hubspot_is_called() -> None:
    with FakeHubSpotServer(FakeHubSpot(rotate_refresh_tokens=True)) as server:
        server.fake.api_base_url = server.url
        with override_settings(HUBSPOT_API_BASE_URL=server.url):
            row = due_connection(server.fake)
            server.fake.latency = 2.0
            outcome: dict[str, Any] = {}

            def caller() -> None:
                try:
                    with transaction.atomic(using=alias()):
                        outcome["token"] = get_access_token(PORTAL)
                except Exception as exc:  # pragma: no cover - reported below
                    outcome["error"] = exc
                finally:
                    close_old_connections()
                    connections.close_all()

            thread = threading.Thread(target=caller)
            thread.start()
            try:
                assert server.received.wait(10), "the caller never called HubSpot"
                database = connections[alias()]
                _lock_wait(database, 1)
                # Another worker writes the row while HubSpot has not answered yet.
                changed = HubSpotConnection.objects.filter(pk=row.pk).update(
                    hub_domain="written-meanwhile.example"
                )
                assert changed == 1
                assert not server.answered.is_set(), "HubSpot answered before the write"
                _lock_wait(database, 30)
            finally:
                thread.join(30)
    assert "error" not in outcome, outcome.get("error")
    stored = HubSpotConnection.objects.get(pk=row.pk)
    assert stored.access_token == outcome["token"]
    assert stored.hub_domain == "written-meanwhile.example"


@pytest.mark.usefixtures("file_databases_only")
def test_a_row_the_caller_locked_is_refreshed_in_the_callers_transaction(
    rotating: FakeHubSpot, caplog: pytest.LogCaptureFixture
) -> None:
    """The second connection cannot take a lock the caller holds: no deadlock, no hang.

    It gives up after LOCK_WAIT seconds and the refresh runs in the caller's transaction,
    with a warning that says so.
    """
    due_connection(rotating)
    caplog.set_level(logging.WARNING, logger="hubspot_connect")
    with transaction.atomic(using=alias()):
        # The caller writes the row first: its transaction now holds the row's lock.
        HubSpotConnection.objects.filter(portal_id=PORTAL).update(hub_domain="mine.example")
        token = get_access_token(PORTAL)
    row = HubSpotConnection.objects.get(portal_id=PORTAL)
    assert row.access_token == token
    assert row.hub_domain == "mine.example"
    assert "inside the caller's transaction" in caplog.text
    assert LOCK_WAIT <= 5


def test_sqlite_without_wal_stores_in_the_callers_transaction_with_a_warning(
    fake_hubspot: FakeHubSpot, caplog: pytest.LogCaptureFixture
) -> None:
    """An in-memory (or rollback-journal) SQLite database cannot take a second writer."""
    if not in_memory_sqlite():
        pytest.skip("runs on the suite's in-memory SQLite database")
    due_connection(fake_hubspot)
    caplog.set_level(logging.WARNING, logger="hubspot_connect")
    with transaction.atomic():
        token = get_access_token(PORTAL)
    assert HubSpotConnection.objects.get(portal_id=PORTAL).access_token == token
    assert "SQLite is not in WAL mode" in caplog.text
