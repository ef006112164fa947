"""A router puts the app on its own database (``tests.sites.router``): every query goes there.

The ``router`` site keeps the app's tables only on ``hubspot`` (and its replica) and the
user tables only on ``default``, so a query on the wrong alias fails: the host-site tests
passing there is the proof for the flow, the admin, the token API, the child-process
refresh and key rotation. This module adds what those cannot show: which alias each
statement used, and that a read after a failed claim never trusts a lagging replica.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hubspot_connect.models import HubSpotConnection
from hubspot_connect.refresh import refresh_connection
from hubspot_connect.testing import FakeHubSpot
from hubspot_connect.tokens import api_session, get_access_token
from tests.sites.conftest import start_flow
from tests.sites.routers import HubSpotRouter

pytestmark = pytest.mark.django_db(databases="__all__")

TABLE = "hubspot_connect_hubspotconnection"


@pytest.fixture(autouse=True)
def router_site() -> None:
    if "hubspot" not in connections:
        pytest.skip("runs in the router host site (--ds=tests.sites.router)")


@pytest.fixture
def statements() -> Iterator[dict[str, list[str]]]:
    """Every SQL statement this thread runs, by alias."""
    seen: dict[str, list[str]] = {alias: [] for alias in connections}
    wrappers = []
    for alias in connections:

        def record(execute: Any, sql: str, *args: Any, alias: str = alias) -> Any:
            seen[alias].append(sql)
            return execute(sql, *args)

        wrapper = connections[alias].execute_wrapper(record)
        wrapper.__enter__()
        wrappers.append(wrapper)
    yield seen
    for wrapper in reversed(wrappers):
        wrapper.__exit__(None, None, None)


def test_the_apps_tables_live_only_on_the_routed_database() -> None:
    assert TABLE not in connections["default"].introspection.table_names()
    assert TABLE in connections["hubspot"].introspection.table_names()
    assert "auth_user" not in connections["hubspot"].introspection.table_names()


def test_the_flow_and_the_token_api_query_only_the_routed_aliases(
    site_client: Client,
    fake_hubspot: FakeHubSpot,
    statements: dict[str, list[str]],
) -> None:
    assert start_flow(site_client, fake_hubspot).status_code == 302
    connection = HubSpotConnection.objects.get()
    HubSpotConnection.objects.filter(pk=connection.pk).update(
        expires_at=timezone.now() + timedelta(seconds=5)
    )
    assert get_access_token(connection.portal_id) != connection.access_token
    assert api_session(connection.portal_id).get("/account-info/2026-03/details").ok
    on_default = [sql for sql in statements["default"] if "hubspot_connect_" in sql]
    assert on_default == []
    writes = [
        sql
        for sql in statements["hubspot"]
        if sql.lstrip().upper().startswith(("UPDATE", "INSERT")) and TABLE in sql
    ]
    assert len(writes) >= 3  # the connect, the claim, the store
    assert not statements["hubspot_replica"]


def test_a_read_after_a_failed_claim_never_trusts_a_lagging_replica(
    make_connection: Callable[..., HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    due = make_connection(expires_in=60)
    # The replica got the row, then stopped following the primary.
    stale = HubSpotConnection.objects.using("hubspot").get(pk=due.pk)
    stale.save(using="hubspot_replica", force_insert=True)
    # Another worker refreshes the row on the primary.
    assert refresh_connection(HubSpotConnection.objects.using("hubspot").get(pk=due.pk))
    fresh = HubSpotConnection.objects.using("hubspot").get(pk=due.pk)
    HubSpotRouter.lagging_replica = True
    try:
        # Loaded from the replica: due, with an old updated_at. The claim on the primary
        # fails; the re-read must come from the primary and find the fresh token.
        assert HubSpotConnection.objects.get(pk=due.pk).access_token == due.access_token
        token = get_access_token(due.portal_id)
    finally:
        HubSpotRouter.lagging_replica = False
    assert token == fresh.access_token
    assert fake_hubspot.refresh_calls() == 1


def test_the_admin_lists_and_searches_users_on_the_other_database(
    staff_client: Client,
    site_user: Any,
    make_connection: Callable[..., HubSpotConnection],
    statements: dict[str, list[str]],
) -> None:
    make_connection(connected_by_id=site_user.pk)
    page = staff_client.get(
        reverse("admin:hubspot_connect_hubspotconnection_changelist"),
        {"q": "connector"},
    )
    assert page.status_code == 200
    assert str(site_user) in page.content.decode()
    assert not [sql for sql in statements["hubspot"] if "auth_user" in sql]
    assert not [sql for sql in statements["default"] if "hubspot_connect_" in sql]
