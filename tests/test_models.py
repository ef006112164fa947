"""HubSpotConnection: what a row shows, and its QuerySet."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from hubspot_connect.models import HubSpotConnection

pytestmark = pytest.mark.django_db


def test_str_and_repr_show_no_token(make_connection):
    row = make_connection()
    plain = make_connection(87654321, hub_domain="")
    for text in (str(row), repr(row), str(plain), repr(plain)):
        for token in (row.access_token, row.refresh_token, plain.access_token):
            assert token not in text
    assert str(row) == "HubSpot portal 12345678 (portal-12345678.hubspot.com)"
    assert str(plain) == "HubSpot portal 87654321"
    assert repr(row) == "<HubSpotConnection portal_id=12345678 status=active>"


def test_one_row_per_portal(make_connection):
    make_connection()
    with pytest.raises(IntegrityError), transaction.atomic():
        HubSpotConnection.objects.create(portal_id=12345678)


def test_active_and_needs_reauth(make_connection):
    active = make_connection(1)
    reauth = make_connection(2, status=HubSpotConnection.Status.NEEDS_REAUTH)
    gone = make_connection(3, status=HubSpotConnection.Status.DISCONNECTED)
    assert list(HubSpotConnection.objects.active()) == [active]
    assert list(HubSpotConnection.objects.needs_reauth()) == [reauth]
    assert gone not in HubSpotConnection.objects.active()


def test_expiring(make_connection):
    soon = make_connection(1, expires_in=60)
    later = make_connection(2, expires_in=3600)
    expired = make_connection(3, expires_in=-10)
    unknown = make_connection(4, expires_at=None)
    assert set(HubSpotConnection.objects.expiring()) == {expired, unknown}
    assert set(HubSpotConnection.objects.expiring(within=timedelta(minutes=5))) == {
        soon,
        expired,
        unknown,
    }
    assert set(HubSpotConnection.objects.expiring(within=timedelta(hours=2))) == {
        soon,
        later,
        expired,
        unknown,
    }
    assert set(HubSpotConnection.objects.active().expiring(timedelta(minutes=5))) == {
        soon,
        expired,
        unknown,
    }


def test_expires_in_and_is_expired(make_connection):
    row = make_connection(expires_in=120)
    now = timezone.now()
    assert timedelta(seconds=110) < row.expires_in(now) <= timedelta(seconds=120)
    assert not row.is_expired(now)
    assert row.is_expired(now + timedelta(seconds=121))
    row.expires_at = None
    assert row.expires_in() is None
    assert row.is_expired()


def test_is_active(make_connection):
    row = make_connection()
    assert row.is_active
    row.status = HubSpotConnection.Status.NEEDS_REAUTH
    assert not row.is_active


# -- scopes and health -------------------------------------------------------------------------

SCOPED = ["oauth", "crm.objects.contacts.read"]


def test_missing_scopes_property_follows_the_setting(make_connection, settings):
    row = make_connection(scopes=["crm.objects.contacts.read", "oauth", "crm.lists.read"])
    assert row.missing_scopes == set()
    settings.HUBSPOT_SCOPES = [*SCOPED, "crm.objects.deals.read"]
    assert row.missing_scopes == {"crm.objects.deals.read"}
    row.scopes = None
    assert row.missing_scopes == {*SCOPED, "crm.objects.deals.read"}


def test_missing_scopes_queryset_compares_whole_scope_names(make_connection, settings):
    granted = make_connection(1, scopes=["crm.objects.contacts.read", "oauth"])
    make_connection(2, scopes=["oauth"])
    make_connection(3, scopes=[])
    # A longer name that contains a required one is not that scope.
    make_connection(4, scopes=["oauth", "crm.objects.contacts.read.all"])
    make_connection(5, scopes=["crm.objects.contacts"])
    gone = make_connection(6, scopes=["oauth"], status="disconnected")
    missing = HubSpotConnection.objects.missing_scopes()
    assert set(missing.values_list("portal_id", flat=True)) == {2, 3, 4, 5, 6}
    assert granted not in missing
    assert set(HubSpotConnection.objects.active().missing_scopes()) == set(
        missing.exclude(pk=gone.pk)
    )
    assert list(
        HubSpotConnection.objects.missing_scopes(["oauth"]).values_list("portal_id", flat=True)
    ) == [3, 5]
    assert not HubSpotConnection.objects.missing_scopes([]).exists()
    settings.HUBSPOT_SCOPES = ["oauth"]
    assert set(HubSpotConnection.objects.missing_scopes().values_list("portal_id", flat=True)) == {
        3,
        5,
    }
    # Every row agrees with its property.
    for row in HubSpotConnection.objects.all():
        assert (
            bool(row.missing_scopes)
            == HubSpotConnection.objects.missing_scopes().filter(pk=row.pk).exists()
        )


def test_failing_needs_attention_and_problems(make_connection):
    healthy = make_connection(1)
    failing = make_connection(2, refresh_failures=2)
    expired = make_connection(3, expires_in=-5)
    unknown_expiry = make_connection(4, expires_at=None)
    reauth = make_connection(5, status="needs_reauth", refresh_failures=1)
    scopes = make_connection(6, scopes=["oauth"])
    gone = make_connection(7, status="disconnected", scopes=[], expires_at=None)
    assert list(HubSpotConnection.objects.failing()) == [failing]
    attention = set(HubSpotConnection.objects.needs_attention())
    assert attention == {failing, expired, unknown_expiry, reauth, scopes}
    assert healthy.problems() == gone.problems() == []
    assert failing.problems() == ["failing"]
    assert expired.problems() == unknown_expiry.problems() == ["expired"]
    assert reauth.problems() == ["needs_reauth"]
    assert scopes.problems() == ["missing_scopes"]
    for row in HubSpotConnection.objects.all():
        assert bool(row.problems()) == (row in attention)
