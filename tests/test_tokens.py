"""hubspot_connect.tokens: refresh under a lease, get_access_token, disconnect, batch refresh."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.contrib.auth.models import AnonymousUser
from django.db import OperationalError
from django.dispatch import Signal
from django.test import override_settings
from django.utils import timezone

from hubspot_connect.client import get_client
from hubspot_connect.exceptions import (
    HubSpotOAuthError,
    HubSpotUnavailable,
    InvalidClient,
    InvalidGrant,
    NeedsReauth,
    PortalDisconnected,
    TokenDecryptionError,
    UnknownPortal,
)
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.signals import (
    hubspot_connected,
    hubspot_disconnected,
    hubspot_needs_reauth,
    hubspot_tokens_refreshed,
)
from hubspot_connect.testing import FakeHubSpot, Fault
from hubspot_connect.tokens import (
    FAILED,
    REFRESHED,
    SKIPPED,
    WOULD_REFRESH,
    RefreshSummary,
    backoff_delay,
    connect_portal,
    disconnect_connection,
    get_access_token,
    refresh_connection,
    refresh_expiring_tokens,
)

pytestmark = pytest.mark.django_db

MakeConnection = Callable[..., HubSpotConnection]
OTHER_KEY = "n1TT9zQvZ8fX6mO7cH5a0s8lT1y2hR3bK4dG9eW0pAc="


def stored(connection: HubSpotConnection) -> HubSpotConnection:
    return HubSpotConnection.objects.get(pk=connection.pk)


def token_calls(fake: FakeHubSpot) -> int:
    return sum(1 for method, path, _ in fake.requests if path.endswith("/token"))


@pytest.fixture
def received() -> Iterator[Callable[[Signal], list[dict[str, Any]]]]:
    """Collects what a signal sends: ``calls = received(signal)``."""
    connected: list[tuple[Signal, Callable[..., None]]] = []

    def listen(signal: Signal) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []

        def receiver(**kwargs: Any) -> None:
            calls.append(kwargs)

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return calls

    yield listen
    for signal, receiver in connected:
        signal.disconnect(receiver)


def assert_no_secrets(text: str, connection: HubSpotConnection) -> None:
    for secret in (connection.access_token, connection.refresh_token, "test-client-secret-8d1f0c"):
        assert secret not in text


# -- refresh_connection ------------------------------------------------


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
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, django_assert_max_num_queries: Any
) -> None:
    connection = make_connection(expires_in=60)
    with django_assert_max_num_queries(2):  # the claim and the store
        assert refresh_connection(connection)


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
def test_a_rejected_client_is_recorded_and_raised(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    with pytest.raises(InvalidClient):
        refresh_connection(connection)
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert row.refresh_failures == 1
    assert "invalid_client" in row.last_error
    assert "not-the-secret-hubspot-knows" not in row.last_error


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


# -- get_access_token ------------------------------------------------


def test_a_fresh_token_takes_one_query_and_no_http(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, django_assert_num_queries: Any
) -> None:
    connection = make_connection(expires_in=1800)
    with django_assert_num_queries(1):
        assert get_access_token(connection.portal_id) == connection.access_token
    with django_assert_num_queries(1):
        assert get_access_token(str(connection.portal_id)) == connection.access_token
    with django_assert_num_queries(0):
        assert get_access_token(connection) == connection.access_token
    assert fake_hubspot.requests == []


@override_settings(HUBSPOT_REFRESH_MARGIN=600)
def test_a_token_within_the_margin_is_refreshed(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=500)
    token = get_access_token(connection.portal_id)
    assert token != connection.access_token
    assert token == stored(connection).access_token
    assert fake_hubspot.is_issued_access_token(token)
    assert fake_hubspot.refresh_calls() == 1


def test_an_expired_token_is_refreshed(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=-10)
    assert get_access_token(connection) == stored(connection).access_token
    assert fake_hubspot.refresh_calls() == 1


def test_an_empty_access_token_is_refreshed(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=1800, access_token="")
    token = get_access_token(connection.portal_id)
    assert token
    assert fake_hubspot.is_issued_access_token(token)


def test_an_unknown_portal_raises(db: None) -> None:
    with pytest.raises(UnknownPortal) as raised:
        get_access_token(999)
    assert raised.value.portal_id == 999
    assert "999" in str(raised.value)


def test_a_value_that_is_no_portal_id_is_not_echoed(db: None) -> None:
    with pytest.raises(UnknownPortal) as raised:
        get_access_token("Cxyz-looks-like-a-token")
    assert "Cxyz" not in str(raised.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [("needs_reauth", NeedsReauth), ("disconnected", PortalDisconnected)],
)
def test_unusable_portals_raise(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, status: str, error: type
) -> None:
    connection = make_connection(status=status)
    with pytest.raises(error) as raised:
        get_access_token(connection.portal_id)
    assert raised.value.portal_id == connection.portal_id
    assert fake_hubspot.requests == []


def test_invalid_grant_raises_needs_reauth(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    fake_hubspot.revoke_all()
    with pytest.raises(NeedsReauth) as raised:
        get_access_token(connection.portal_id)
    assert raised.value.portal_id == connection.portal_id
    assert_no_secrets(str(raised.value), connection)
    assert stored(connection).status == HubSpotConnection.Status.NEEDS_REAUTH


def test_hubspot_down_returns_the_stored_token_until_it_expires(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, caplog: Any
) -> None:
    connection = make_connection(expires_in=60)
    fake_hubspot.fail("status", status=503)
    with caplog.at_level(logging.WARNING, logger="hubspot_connect"):
        assert get_access_token(connection.portal_id) == connection.access_token
    assert "using the stored token" in caplog.text
    assert_no_secrets(caplog.text, connection)
    assert stored(connection).refresh_failures == 1


def test_hubspot_down_and_token_expired_raises_unavailable(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=-1)
    fake_hubspot.fail("timeout")
    with pytest.raises(HubSpotUnavailable):
        get_access_token(connection.portal_id)


@override_settings(HUBSPOT_CLIENT_SECRET="not-the-secret-hubspot-knows")
def test_a_rejected_client_and_an_expired_token_raise(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=-1)
    with pytest.raises(HubSpotOAuthError):
        get_access_token(connection.portal_id)


def test_a_dead_workers_lease_is_taken_over_after_it_runs_out(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    held = timezone.now() + timedelta(seconds=0.4)
    HubSpotConnection.objects.filter(pk=connection.pk).update(lease_expires_at=held)
    started = time.monotonic()
    token = get_access_token(connection.portal_id)
    assert time.monotonic() - started >= 0.3
    assert token == stored(connection).access_token != connection.access_token
    assert fake_hubspot.refresh_calls() == 1


@override_settings(HUBSPOT_REFRESH_LEASE=0)
@pytest.mark.parametrize("expires_in", [60, -1])
def test_waiting_for_another_worker_is_bounded(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, expires_in: int, caplog: Any
) -> None:
    connection = make_connection(expires_in=expires_in)
    held = timezone.now() + timedelta(seconds=30)
    HubSpotConnection.objects.filter(pk=connection.pk).update(lease_expires_at=held)
    started = time.monotonic()
    if expires_in > 0:
        with caplog.at_level(logging.WARNING, logger="hubspot_connect"):
            assert get_access_token(connection.portal_id) == connection.access_token
        assert "still refreshing" in caplog.text
    else:
        with pytest.raises(HubSpotUnavailable, match="timed out waiting"):
            get_access_token(connection.portal_id)
    assert 0.9 <= time.monotonic() - started < 3
    assert fake_hubspot.requests == []


def _other_worker(pk: int, delay: float, **values: Any) -> threading.Thread:
    def run() -> None:
        from django.db import connection as db

        try:
            time.sleep(delay)
            values.update(lease_expires_at=None, updated_at=timezone.now())
            for _ in range(50):  # the in-memory test database may be briefly locked
                try:
                    HubSpotConnection.objects.filter(pk=pk).update(**values)
                    break
                except OperationalError:
                    time.sleep(0.01)
        finally:
            db.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_waiting_reader_gets_the_token_the_other_worker_stored(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=60)
    HubSpotConnection.objects.filter(pk=connection.pk).update(
        lease_expires_at=timezone.now() + timedelta(seconds=30)
    )
    new = fake_hubspot.issue_tokens(connection.portal_id)["access_token"]
    now = timezone.now()
    thread = _other_worker(
        connection.pk,
        0.3,
        access_token=new,
        expires_at=now + timedelta(seconds=1800),
        last_refreshed_at=now,
    )
    try:
        assert get_access_token(connection.portal_id) == new
    finally:
        thread.join()
    assert fake_hubspot.refresh_calls() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("expires_in", [60, -1])
def test_a_waiting_reader_sees_the_other_workers_failure(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, expires_in: int
) -> None:
    connection = make_connection(expires_in=expires_in)
    HubSpotConnection.objects.filter(pk=connection.pk).update(
        lease_expires_at=timezone.now() + timedelta(seconds=30)
    )
    thread = _other_worker(
        connection.pk, 0.3, refresh_failures=1, last_error="HTTP 503", last_error_at=timezone.now()
    )
    try:
        if expires_in > 0:
            assert get_access_token(connection.portal_id) == connection.access_token
        else:
            with pytest.raises(HubSpotUnavailable, match="has expired"):
                get_access_token(connection.portal_id)
    finally:
        thread.join()
    assert fake_hubspot.refresh_calls() == 0


def test_an_undecryptable_token_raises_a_clear_error(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    with override_settings(FIELD_ENCRYPTION_KEY=OTHER_KEY), pytest.raises(TokenDecryptionError):
        get_access_token(connection.portal_id)
    assert fake_hubspot.requests == []


# -- disconnect ------------------------------------------------


def test_disconnect_revokes_and_wipes(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, received: Any
) -> None:
    connection = make_connection()
    refresh = connection.refresh_token
    calls = received(hubspot_disconnected)
    connection.disconnect()
    assert not fake_hubspot.is_live_refresh_token(refresh)
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.DISCONNECTED
    assert (row.access_token, row.refresh_token, row.expires_at) == ("", "", None)
    assert [call["connection"].pk for call in calls] == [connection.pk]


def test_disconnect_without_revoking_makes_no_http_call(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    refresh = connection.refresh_token
    connection.disconnect(revoke=False)
    assert fake_hubspot.requests == []
    assert fake_hubspot.is_live_refresh_token(refresh)
    assert stored(connection).status == HubSpotConnection.Status.DISCONNECTED


def test_disconnect_keeps_the_row_when_hubspot_is_down(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("status", status=503, endpoint="revoke")
    with pytest.raises(HubSpotUnavailable):
        disconnect_connection(connection)
    row = stored(connection)
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert row.refresh_token == connection.refresh_token


def test_disconnect_wipes_even_if_hubspot_refuses_the_revocation(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("invalid_grant", endpoint="revoke")
    disconnect_connection(connection)
    assert stored(connection).status == HubSpotConnection.Status.DISCONNECTED


# -- batch refresh ------------------------------------------------


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
def test_batch_does_not_retry_a_rejected_client(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    make_connection(expires_in=60)
    sleeps: list[float] = []
    summary = refresh_expiring_tokens(concurrency=1, sleep=sleeps.append)
    assert summary.failed == 1
    assert sleeps == []


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
    failed = HubSpotConnection.objects.filter(pk=bad.pk).values("refresh_failures", "last_error")
    assert failed[0]["refresh_failures"] == 1
    assert "FIELD_ENCRYPTION_KEY" in failed[0]["last_error"]


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


# -- more refresh and read paths ----------------------------------------------------------


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


# -- connect_portal ---------------------------------------------------------------------------

REDIRECT = "https://testserver/hubspot/callback/"


def authorization_code(fake: FakeHubSpot, portal_id: int = 12345678) -> str:
    url = get_client().authorization_url(redirect_uri=REDIRECT, state="state-1")
    callback = fake.approve(url, portal_id=portal_id)
    return parse_qs(urlsplit(callback).query)["code"][0]


def test_connect_portal_stores_the_portal(
    fake_hubspot: FakeHubSpot, connector: Any, received: Any
) -> None:
    calls = received(hubspot_connected)
    connection, created = connect_portal(
        code=authorization_code(fake_hubspot), redirect_uri=REDIRECT, user=connector
    )
    assert created is True
    row = stored(connection)
    assert (row.portal_id, row.hub_domain, row.hublet) == (
        12345678,
        "demo-company.hubspot.com",
        "na1",
    )
    assert row.hubspot_user_email == "owner@demo-company.example"
    assert row.hubspot_user_id == 4101
    assert row.connected_by == connector
    assert "oauth" in row.scopes
    assert fake_hubspot.is_issued_access_token(row.access_token)
    assert row.expires_at is not None
    assert [(call["created"], call["request"]) for call in calls] == [(True, None)]


def test_reconnecting_makes_a_needs_reauth_row_active_again(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    old = make_connection(
        status="needs_reauth", refresh_failures=4, last_error="invalid_grant", hub_domain=""
    )
    connection, created = connect_portal(
        code=authorization_code(fake_hubspot), redirect_uri=REDIRECT, user=AnonymousUser()
    )
    assert created is False
    assert connection.pk == old.pk
    row = stored(old)
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert (row.refresh_failures, row.last_error, row.lease_expires_at) == (0, "", None)
    assert row.refresh_token != old.refresh_token
    assert row.connected_by is None


def test_connect_survives_a_failed_introspection_when_the_token_names_the_portal(
    db: None, fake_hubspot: FakeHubSpot, caplog: Any
) -> None:
    code = authorization_code(fake_hubspot, portal_id=87654321)
    fake_hubspot.fail("status", status=503, endpoint="introspect")
    connection, created = connect_portal(code=code, redirect_uri=REDIRECT)
    assert created is True
    assert connection.portal_id == 87654321
    assert connection.hublet == "eu1"  # from the refresh token's prefix
    assert connection.hub_domain == ""
    assert "introspection failed" in caplog.text


def test_connect_uses_introspection_when_the_token_response_has_no_portal(
    db: None, fake_hubspot: FakeHubSpot
) -> None:
    fake_hubspot.include_token_metadata = False
    connection, _ = connect_portal(code=authorization_code(fake_hubspot), redirect_uri=REDIRECT)
    assert connection.portal_id == 12345678
    assert connection.hubspot_user_id == 4101


def test_connect_fails_when_no_portal_can_be_known(db: None, fake_hubspot: FakeHubSpot) -> None:
    fake_hubspot.include_token_metadata = False
    code = authorization_code(fake_hubspot)
    fake_hubspot.fail("status", status=503, endpoint="introspect")
    with pytest.raises(HubSpotUnavailable):
        connect_portal(code=code, redirect_uri=REDIRECT)
    assert not HubSpotConnection.objects.exists()


def test_connect_fails_when_introspection_names_no_portal(db: None) -> None:
    token = {"access_token": "Cabc", "refresh_token": "na1-r", "expires_in": 1800}
    with responses.RequestsMock() as mock:
        mock.post("https://api.hubapi.com/oauth/2026-03/token", json=token)
        mock.post("https://api.hubapi.com/oauth/2026-03/token/introspect", json={"active": False})
        with pytest.raises(HubSpotUnavailable, match="which portal"):
            connect_portal(code="na1-code", redirect_uri=REDIRECT)
    assert not HubSpotConnection.objects.exists()
