"""Query and HTTP request counts of the hot paths, pinned so a regression fails the suite.

Counts, never times: ``benchmarks/run.py`` measures the times. A refresh run over N due
connections costs a fixed handful of queries plus exactly two per connection (claim,
then save), and one HTTP request per connection; reading a fresh token costs one query.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from hubspot_connect.batch import refresh_expiring_tokens
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.refresh import refresh_connection
from hubspot_connect.testing import FakeHubSpot
from hubspot_connect.tokens import get_access_token

MakeConnection = Callable[..., HubSpotConnection]

TOKEN_PATH = "/oauth/2026-03/token"
# refresh_expiring_tokens(concurrency=1) over up to one chunk of due rows: select the due
# primary keys, load the chunk, count the rows awaiting re-auth.
FIXED_QUERIES = 3
QUERIES_PER_CONNECTION = 2  # claim (conditional UPDATE) + save (UPDATE under the lease)


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
    django_assert_max_num_queries: Any,
) -> None:
    connection = make_connection(12345678, expires_in=60)

    with django_assert_max_num_queries(2):
        refreshed = refresh_connection(connection)

    assert refreshed is True
    assert _token_requests(fake_hubspot) == 1
    assert fake_hubspot.refresh_calls() == 1


@pytest.mark.parametrize("count", [5, 20])
def test_refresh_run_costs_the_same_queries_per_connection_for_any_n(
    count: int,
    make_connection: MakeConnection,
    fake_hubspot: FakeHubSpot,
    django_assert_num_queries: Any,
) -> None:
    connections = _due(make_connection, count)
    fake_hubspot.requests.clear()

    with django_assert_num_queries(FIXED_QUERIES + QUERIES_PER_CONNECTION * count):
        summary = refresh_expiring_tokens(concurrency=1)

    assert (summary.refreshed, summary.failed, summary.skipped) == (count, 0, 0)
    assert _token_requests(fake_hubspot) == count == len(fake_hubspot.requests)
    by_token = fake_hubspot.refresh_calls_by_token()
    assert all(by_token.get(row.refresh_token) == 1 for row in connections)


def test_refresh_run_queries_grow_linearly(
    make_connection: MakeConnection,
    fake_hubspot: FakeHubSpot,
) -> None:
    """Two runs over N=5 and N=20 (in one test) differ by exactly 2 queries per connection."""
    totals: dict[int, int] = {}
    for count in (5, 20):
        HubSpotConnection.objects.all().delete()
        _due(make_connection, count)
        with CaptureQueriesContext(db) as captured:
            refresh_expiring_tokens(concurrency=1)
        totals[count] = len(captured.captured_queries)

    assert (totals[20] - totals[5]) == QUERIES_PER_CONNECTION * 15
    assert totals[5] == FIXED_QUERIES + QUERIES_PER_CONNECTION * 5


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
