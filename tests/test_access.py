"""hubspot_connect.access: get_access_token, the wait for another worker, HubSpot down."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from hubspot_connect.access import get_access_token
from hubspot_connect.exceptions import (
    HubSpotOAuthError,
    HubSpotUnavailable,
    NeedsReauth,
    PortalDisconnected,
    TokenDecryptionError,
    UnknownPortal,
)
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.testing import FakeHubSpot
from tests.helpers import OTHER_KEY, MakeConnection, assert_no_secrets, stored

pytestmark = pytest.mark.django_db


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
