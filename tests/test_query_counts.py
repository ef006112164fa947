"""Query and HTTP request counts of the hot paths, pinned so a regression fails the suite.

Counts, never times: ``benchmarks/run.py`` measures the times. A refresh run over N due
connections costs a fixed handful of queries plus exactly two per connection (claim,
then save), and one HTTP request per connection; reading a fresh token costs one query.
The run's history (refreshes counted per hour) costs a constant few queries per run,
whatever N: the counts are kept in memory and written once per chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from hubspot_connect.batch import refresh_expiring_tokens
from hubspot_connect.models import HubSpotConnection, HubSpotRefreshHour
from hubspot_connect.refresh import refresh_connection
from hubspot_connect.testing import FakeHubSpot
from hubspot_connect.tokens import get_access_token

MakeConnection = Callable[..., HubSpotConnection]

TOKEN_PATH = "/oauth/2026-03/token"
# refresh_expiring_tokens(concurrency=1) over up to one chunk of due rows: select the due
# primary keys, load the chunk, count the rows awaiting re-auth.
FIXED_QUERIES = 3
QUERIES_PER_CONNECTION = 2  # claim (conditional UPDATE) + save (UPDATE under the lease)
# Adding a run's counts to its hour: an UPDATE, and in the hour's first run an INSERT
# (behind a savepoint inside the test's transaction).
HISTORY_QUERIES = 4
HOUR_TABLE = HubSpotRefreshHour._meta.db_table


def _split(captured: CaptureQueriesContext) -> tuple[int, int]:
    """(queries on connections, queries on the history) of a captured run."""
    history = [
        query["sql"]
        for query in captured.captured_queries
        if HOUR_TABLE in query["sql"] or query["sql"].startswith(("SAVEPOINT", "RELEASE"))
    ]
    return len(captured.captured_queries) - len(history), len(history)


def _token_requests(fake_hubspot: FakeHubSpot) -> int:
    return sum(
        1 for method, path, _ in fake_hubspot.requests if (method, path) == ("POST", TOKEN_PATH)
    )


def _due(make_connection: MakeConnection, count: int) -> list[HubSpotConnection]:
    return [make_connection(1000 + number, expires_in=60) for number in range(count)]


def test_get_access_token_on_a_fresh_token_is_one_query(
    make_connection: MakeConnection,
    fake_hubspot: FakeHubSpot,
    django_assert_num_queries: Any,
) -> None:
    connection = make_connection(12345678, expires_in=1800)

    with django_assert_num_queries(1) as captured:
        token = get_access_token(12345678)

    assert token == connection.access_token
    assert "portal_id" in captured.captured_queries[0]["sql"]
    assert fake_hubspot.requests == []


def test_refresh_connection_of_a_current_instance_claims_and_saves(
    make_connection: MakeConnection,
    fake_hubspot: FakeHubSpot,
) -> None:
    connection = make_connection(12345678, expires_in=60)

    with CaptureQueriesContext(db) as captured:
        refreshed = refresh_connection(connection)

    assert refreshed is True
    assert _split(captured) == (2, HISTORY_QUERIES)  # the hour's first refresh adds its row
    assert _token_requests(fake_hubspot) == 1
    assert fake_hubspot.refresh_calls() == 1
    with CaptureQueriesContext(db) as captured:
        assert refresh_connection(connection, force=True) is True
    # Claim and store; then add to the hour's count (behind a savepoint in the test's
    # transaction: only the UPDATE outside one).
    assert _split(captured) == (2, 3)
    assert HubSpotRefreshHour.objects.get().refreshed == 2


@pytest.mark.parametrize("count", [5, 20])
def test_refresh_run_costs_the_same_queries_per_connection_for_any_n(
    count: int,
    make_connection: MakeConnection,
    fake_hubspot: FakeHubSpot,
) -> None:
    connections = _due(make_connection, count)
    fake_hubspot.requests.clear()

    with CaptureQueriesContext(db) as captured:
        summary = refresh_expiring_tokens(concurrency=1)

    assert _split(captured) == (FIXED_QUERIES + QUERIES_PER_CONNECTION * count, HISTORY_QUERIES)
    assert HubSpotRefreshHour.objects.get().refreshed == count
    assert (summary.refreshed, summary.failed, summary.skipped) == (count, 0, 0)
    assert _token_requests(fake_hubspot) == count == len(fake_hubspot.requests)
    by_token = fake_hubspot.refresh_calls_by_token()
    assert all(by_token.get(row.refresh_token) == 1 for row in connections)


def test_refresh_run_queries_grow_linearly(
    make_connection: MakeConnection,
    fake_hubspot: FakeHubSpot,
) -> None:
    """Two runs over N=5 and N=20 (in one test) differ by exactly 2 queries per connection."""
    totals: dict[int, tuple[int, int]] = {}
    for count in (5, 20):
        HubSpotConnection.objects.all().delete()
        HubSpotRefreshHour.objects.all().delete()
        _due(make_connection, count)
        with CaptureQueriesContext(db) as captured:
            refresh_expiring_tokens(concurrency=1)
        totals[count] = _split(captured)

    assert (totals[20][0] - totals[5][0]) == QUERIES_PER_CONNECTION * 15
    assert totals[5][0] == FIXED_QUERIES + QUERIES_PER_CONNECTION * 5
    assert totals[5][1] == totals[20][1] == HISTORY_QUERIES


def test_nothing_due_costs_only_the_fixed_queries_and_no_http(
    make_connection: MakeConnection,
    fake_hubspot: FakeHubSpot,
    django_assert_max_num_queries: Any,
) -> None:
    make_connection(12345678, expires_in=3600)
    fake_hubspot.requests.clear()

    with django_assert_max_num_queries(FIXED_QUERIES):
        summary = refresh_expiring_tokens(concurrency=1)

    assert summary.refreshed == 0
    assert fake_hubspot.requests == []
