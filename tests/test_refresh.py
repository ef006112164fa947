"""hubspot_connect.refresh: refresh one connection under the lease."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hubspot_connect.access import get_access_token
from hubspot_connect.connect import disconnect_connection
from hubspot_connect.exceptions import (
    HubSpotUnavailable,
    InvalidClient,
    InvalidGrant,
    NeedsReauth,
    PortalDisconnected,
    UnknownPortal,
)
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.refresh import refresh_connection
from hubspot_connect.signals import (
    hubspot_needs_reauth,
    hubspot_tokens_refreshed,
)
from hubspot_connect.testing import FakeHubSpot, Fault
from tests.helpers import MakeConnection, assert_no_secrets, stored

pytestmark = pytest.mark.django_db


def test_refresh_stores_new_tokens_and_resets_failures(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, received: Any
) -> None:
    connection = make_connection(expires_in=60, refresh_failures=2, last_error="old problem")
    old_access, old_refresh = connection.access_token, connection.refresh_token
    refreshed = received(hubspot_tokens_refreshed)
    before = timezone.now()

    assert refresh_connection(connection) is True

    row = stored(connection)
    assert row.access_token != old_access
    assert fake_hubspot.is_issued_access_token(row.access_token)
    assert row.refresh_token == old_refresh
    assert row.refresh_failures == 0
    assert row.last_error == ""
    assert row.lease_expires_at is None
    assert row.last_refreshed_at is not None
    assert row.last_refreshed_at >= before
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert connection.access_token == row.access_token  # the object is updated too
    assert fake_hubspot.refresh_calls(old_refresh) == 1
    assert [call["connection"].pk for call in refreshed] == [connection.pk]


def test_expiry_is_counted_from_when_the_request_was_sent(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    fake_hubspot.latency = 0.3
    before = timezone.now()
    assert refresh_connection(connection)
    row = stored(connection)
    assert row.expires_at is not None
    assert row.last_refreshed_at is not None
    issued_at = row.expires_at - timedelta(seconds=1800)
    assert before <= issued_at
    assert issued_at <= row.last_refreshed_at - timedelta(seconds=0.25)


def test_refresh_stores_a_rotated_refresh_token(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    old_refresh = connection.refresh_token
    fake_hubspot.rotate_refresh_tokens = True
    assert refresh_connection(connection)
    row = stored(connection)
    assert row.refresh_token != old_refresh
    assert fake_hubspot.is_live_refresh_token(row.refresh_token)
    assert not fake_hubspot.is_live_refresh_token(old_refresh)


def test_refresh_updates_scopes_hubspot_reports(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60, scopes=["oauth"])
    assert refresh_connection(connection)
    assert stored(connection).scopes == ["oauth", "crm.objects.contacts.read"]


def test_a_token_that_is_not_due_is_not_refreshed(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, django_assert_num_queries: Any
) -> None:
    connection = make_connection(expires_in=3600)
    with django_assert_num_queries(0):
        assert refresh_connection(connection) is False
    assert fake_hubspot.requests == []


def test_force_refreshes_a_token_that_is_not_due(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=3600)
    old = connection.access_token
    assert refresh_connection(connection, force=True) is True
    assert stored(connection).access_token != old


def test_refresh_takes_three_queries(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    assert refresh_connection(connection)  # the hour's first refresh also adds its row
    with CaptureQueriesContext(db_connection) as captured:
        assert refresh_connection(connection, force=True)
    # The claim, the store and the hour's count; the savepoint around the count exists
    # only because the test runs in a transaction.
    statements = [
        query["sql"] for query in captured.captured_queries if "SAVEPOINT" not in query["sql"]
    ]
    assert len(statements) == 3
    tables = [(sql.split()[0], sql.split()[1].strip('"`').lower()) for sql in statements]
    assert tables == [
        ("UPDATE", "hubspot_connect_hubspotconnection"),  # the claim
        ("UPDATE", "hubspot_connect_hubspotconnection"),  # the store
        ("UPDATE", "hubspot_connect_hubspotrefreshhour"),  # the hour's count
    ]


def test_a_held_lease_is_respected(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    lease = timezone.now() + timedelta(seconds=30)
    HubSpotConnection.objects.filter(pk=connection.pk).update(lease_expires_at=lease)
    assert refresh_connection(connection) is False
    assert refresh_connection(connection, force=True) is False
    assert fake_hubspot.requests == []
    assert connection.lease_expires_at == lease  # re-read: the caller sees who holds it


def test_a_dead_workers_lease_runs_out(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    expired = timezone.now() - timedelta(seconds=1)
    HubSpotConnection.objects.filter(pk=connection.pk).update(lease_expires_at=expired)
    assert refresh_connection(connection) is True
    assert stored(connection).lease_expires_at is None


def test_a_row_refreshed_since_it_was_read_is_not_refreshed_again(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    stale = stored(connection)
    assert refresh_connection(connection, force=True)

    assert refresh_connection(stale, force=True) is False
    assert fake_hubspot.refresh_calls() == 1
    assert stale.access_token == connection.access_token  # it now holds the stored row


def test_a_copy_made_stale_by_another_change_still_refreshes(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    other = stored(connection)
    other.hub_domain = "renamed.hubspot.com"
    other.save()
    assert refresh_connection(connection) is True
    assert fake_hubspot.refresh_calls() == 1
    assert stored(connection).hub_domain == "renamed.hubspot.com"


def test_invalid_grant_marks_the_row_needs_reauth(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, received: Any, caplog: Any
) -> None:
    connection = make_connection(expires_in=60)
    old_access, old_refresh = connection.access_token, connection.refresh_token
    reauth = received(hubspot_needs_reauth)
    refreshed = received(hubspot_tokens_refreshed)
    fake_hubspot.revoke_all(connection.portal_id)

    with pytest.raises(InvalidGrant):
        refresh_connection(connection)

    row = stored(connection)
    assert row.status == HubSpotConnection.Status.NEEDS_REAUTH
    assert (row.access_token, row.refresh_token) == (old_access, old_refresh)
    assert row.refresh_failures == 1
    assert "invalid_grant" in row.last_error
    assert row.last_error_at is not None
    assert row.lease_expires_at is None
    assert_no_secrets(row.last_error, row)
    assert_no_secrets(caplog.text, row)
    assert len(reauth) == 1
    assert isinstance(reauth[0]["error"], InvalidGrant)
    assert reauth[0]["connection"].pk == connection.pk
    assert refreshed == []

    # Never retried until reconnected.
    with pytest.raises(NeedsReauth):
        refresh_connection(connection, force=True)
    with pytest.raises(NeedsReauth):
        refresh_connection(stored(connection), force=True)
    assert fake_hubspot.refresh_calls() == 1


def test_a_missing_refresh_token_needs_reauth_without_calling_hubspot(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60, refresh_token="")
    with pytest.raises(InvalidGrant):
        refresh_connection(connection)
    assert stored(connection).status == HubSpotConnection.Status.NEEDS_REAUTH
    assert fake_hubspot.requests == []


@pytest.mark.parametrize(
    ("fault", "retry_after"),
    [
        (Fault("timeout"), None),
        (Fault("reset"), None),
        (Fault("status", status=503), None),
        (Fault("status", status=500), None),
        (Fault("status", status=429, retry_after=7), 7.0),
        (Fault("non_json"), None),
        (Fault("truncated"), None),
        (Fault("missing_fields"), None),
    ],
    ids=["timeout", "reset", "503", "500", "429", "non-json", "truncated", "missing-fields"],
)
def test_a_transient_failure_keeps_the_tokens_and_records_it(
    make_connection: MakeConnection,
    fake_hubspot: FakeHubSpot,
    received: Any,
    caplog: Any,
    fault: Fault,
    retry_after: float | None,
) -> None:
    connection = make_connection(expires_in=60, refresh_failures=1)
    old = stored(connection)
    reauth, refreshed = received(hubspot_needs_reauth), received(hubspot_tokens_refreshed)
    fake_hubspot.fail(**fault.__dict__)

    with pytest.raises(HubSpotUnavailable) as raised:
        refresh_connection(connection)

    assert raised.value.retry_after == retry_after
    row = stored(connection)
    assert (row.access_token, row.refresh_token, row.expires_at) == (
        old.access_token,
        old.refresh_token,
        old.expires_at,
    )
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert row.refresh_failures == 2
    assert row.last_error
    assert row.last_error_at is not None
    assert row.lease_expires_at is None
    assert row.last_refreshed_at is None
    assert_no_secrets(row.last_error, row)
    assert_no_secrets(caplog.text, row)
    assert_no_secrets(str(raised.value), row)
    assert reauth == refreshed == []
    # The failure does not block the next attempt.
    assert refresh_connection(connection) is True


@override_settings(HUBSPOT_CLIENT_SECRET="not-the-secret-hubspot-knows")
def test_a_rejected_client_is_raised_and_leaves_the_row_as_it_was(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    """The app's credentials are wrong, not this portal: nothing about it changes."""
    connection = make_connection(expires_in=60, refresh_failures=2, last_error="HTTP 503")
    with pytest.raises(InvalidClient) as raised:
        refresh_connection(connection)
    assert "not-the-secret-hubspot-knows" not in str(raised.value)
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert (row.refresh_failures, row.last_error, row.failing_since) == (2, "HTTP 503", None)
    assert (row.access_token, row.refresh_token) == (
        connection.access_token,
        connection.refresh_token,
    )
    assert row.lease_expires_at is None  # released: the next run may try again


def test_tokens_are_not_stored_once_the_lease_was_lost(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, received: Any, caplog: Any
) -> None:
    connection = make_connection(expires_in=60)
    old_access = connection.access_token
    taken_over = timezone.now() + timedelta(seconds=45)
    refreshed = received(hubspot_tokens_refreshed)

    def other_worker_takes_over(endpoint: str) -> None:
        HubSpotConnection.objects.filter(pk=connection.pk).update(lease_expires_at=taken_over)

    fake_hubspot.fault_plan = other_worker_takes_over
    with caplog.at_level(logging.WARNING, logger="hubspot_connect"):
        assert refresh_connection(connection) is False
    row = stored(connection)
    assert row.access_token == old_access
    assert row.lease_expires_at == taken_over
    assert connection.lease_expires_at == taken_over
    assert refreshed == []
    assert "lease ran out" in caplog.text


def test_invalid_grant_after_the_lease_was_lost_changes_nothing(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, received: Any
) -> None:
    connection = make_connection(expires_in=60)
    reauth = received(hubspot_needs_reauth)

    def other_worker_takes_over(endpoint: str) -> Fault:
        later = timezone.now() + timedelta(seconds=45)
        HubSpotConnection.objects.filter(pk=connection.pk).update(lease_expires_at=later)
        return Fault("invalid_grant")

    fake_hubspot.fault_plan = other_worker_takes_over
    assert refresh_connection(connection) is False
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert row.refresh_failures == 0
    assert reauth == []


def test_a_disconnect_during_the_refresh_wins(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)

    def staff_disconnects(endpoint: str) -> None:
        fake_hubspot.fault_plan = None
        disconnect_connection(stored(connection), revoke=False)

    fake_hubspot.fault_plan = staff_disconnects
    assert refresh_connection(connection) is False
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.DISCONNECTED
    assert row.access_token == row.refresh_token == ""


def test_a_row_deleted_during_the_refresh_raises_unknown_portal(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    fake_hubspot.fault_plan = lambda endpoint: HubSpotConnection.objects.all().delete() and None
    with pytest.raises(UnknownPortal):
        refresh_connection(connection)


def test_an_unexpected_error_releases_the_lease(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    old_access = connection.access_token

    def explode(endpoint: str) -> None:
        raise RuntimeError("boom")

    fake_hubspot.fault_plan = explode
    with pytest.raises(RuntimeError):
        refresh_connection(connection)
    row = stored(connection)
    assert row.lease_expires_at is None
    assert row.access_token == old_access
    fake_hubspot.fault_plan = None
    assert refresh_connection(connection) is True


@pytest.mark.parametrize(
    ("status", "error"),
    [("needs_reauth", NeedsReauth), ("disconnected", PortalDisconnected)],
)
def test_unusable_rows_are_not_refreshed(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, status: str, error: type
) -> None:
    connection = make_connection(expires_in=60, status=status)
    with pytest.raises(error) as raised:
        refresh_connection(connection, force=True)
    assert raised.value.portal_id == connection.portal_id
    assert fake_hubspot.requests == []


def test_model_refresh_delegates(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=3600)
    assert connection.refresh() is False
    assert connection.refresh(force=True) is True
    assert fake_hubspot.refresh_calls() == 1


def test_str_and_repr_show_no_token(make_connection: MakeConnection) -> None:
    connection = make_connection()
    for text in (str(connection), repr(connection)):
        assert str(connection.portal_id) in text
        assert_no_secrets(text, connection)


def test_scopes_are_kept_when_hubspot_does_not_send_them(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60, scopes=["oauth", "custom"])
    fake_hubspot.include_token_metadata = False
    assert refresh_connection(connection)
    assert stored(connection).scopes == ["oauth", "custom"]


def test_a_reconnected_row_is_not_refreshed_from_a_stale_copy(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    stale = stored(connection)
    issued = fake_hubspot.issue_tokens(connection.portal_id)
    connection.access_token = issued["access_token"]
    connection.refresh_token = issued["refresh_token"]
    connection.expires_at = timezone.now() + timedelta(seconds=1800)
    connection.save()

    assert refresh_connection(stale) is False
    assert stale.access_token == issued["access_token"]
    assert get_access_token(stored(connection)) == issued["access_token"]
    assert fake_hubspot.refresh_calls() == 0


def test_get_access_token_with_a_stale_copy_returns_the_reconnected_token(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    stale = stored(connection)
    issued = fake_hubspot.issue_tokens(connection.portal_id)
    connection.access_token = issued["access_token"]
    connection.expires_at = timezone.now() + timedelta(seconds=1800)
    connection.save()
    assert get_access_token(stale) == issued["access_token"]
    assert fake_hubspot.refresh_calls() == 0
