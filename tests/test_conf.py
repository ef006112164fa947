"""conf.py: one typed property per setting, read from settings on every access."""

from __future__ import annotations

import pytest
from django.test import override_settings

from hubspot_connect.conf import app_settings


def test_defaults(settings):
    for name in (
        "HUBSPOT_OPTIONAL_SCOPES",
        "HUBSPOT_REDIRECT_URI",
        "HUBSPOT_AUTHORIZE_URL",
        "HUBSPOT_API_BASE_URL",
        "HUBSPOT_OAUTH_API_VERSION",
        "HUBSPOT_HTTP_TIMEOUT",
        "HUBSPOT_STATE_MAX_AGE",
        "HUBSPOT_REFRESH_MARGIN",
        "HUBSPOT_REFRESH_LEASE",
        "HUBSPOT_CONNECT_PERMISSION",
        "HUBSPOT_SUCCESS_URL",
    ):
        if hasattr(settings, name):
            delattr(settings, name)
    del settings.HUBSPOT_CLIENT_ID, settings.HUBSPOT_CLIENT_SECRET, settings.HUBSPOT_SCOPES
    del settings.FIELD_ENCRYPTION_KEY
    assert app_settings.CLIENT_ID == ""
    assert app_settings.CLIENT_SECRET == ""
    assert app_settings.SCOPES == []
    assert app_settings.OPTIONAL_SCOPES == []
    assert app_settings.REDIRECT_URI is None
    assert app_settings.AUTHORIZE_URL == "https://app.hubspot.com/oauth/authorize"
    assert app_settings.API_BASE_URL == "https://api.hubapi.com"
    assert app_settings.OAUTH_API_VERSION == "2026-03"
    assert app_settings.HTTP_TIMEOUT == 10.0
    assert app_settings.STATE_MAX_AGE == 600
    assert app_settings.REFRESH_MARGIN == 300
    assert app_settings.REFRESH_LEASE == 60
    assert app_settings.CONNECT_PERMISSION is None
    assert app_settings.SUCCESS_URL == "/"
    assert app_settings.ENCRYPTION_KEYS == []


def test_every_access_reads_the_current_settings():
    assert app_settings.CLIENT_ID == "test-client-id"
    with override_settings(HUBSPOT_CLIENT_ID="changed", HUBSPOT_HTTP_TIMEOUT=3):
        assert app_settings.CLIENT_ID == "changed"
        assert app_settings.HTTP_TIMEOUT == 3.0
    assert app_settings.CLIENT_ID == "test-client-id"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["oauth", "tickets"], ["oauth", "tickets"]),
        (("oauth", "tickets"), ["oauth", "tickets"]),
        ("oauth  tickets\ncrm.lists.read", ["oauth", "tickets", "crm.lists.read"]),
        ({"tickets", "oauth"}, ["oauth", "tickets"]),
        (frozenset({"b", "a"}), ["a", "b"]),
        (None, []),
        (7, []),
    ],
)
def test_scopes_accept_a_list_a_string_or_a_set(value, expected):
    with override_settings(HUBSPOT_SCOPES=value, HUBSPOT_OPTIONAL_SCOPES=value):
        assert expected == app_settings.SCOPES
        assert expected == app_settings.OPTIONAL_SCOPES


def test_api_base_url_loses_its_trailing_slash():
    with override_settings(HUBSPOT_API_BASE_URL="http://127.0.0.1:8001/fake/"):
        assert app_settings.API_BASE_URL == "http://127.0.0.1:8001/fake"


@pytest.mark.parametrize(("timeout", "lease"), [(10, 60), (30, 90), (5.5, 60)])
def test_refresh_lease_defaults_to_three_timeouts_at_least_a_minute(timeout, lease):
    with override_settings(HUBSPOT_HTTP_TIMEOUT=timeout):
        assert lease == app_settings.REFRESH_LEASE
    with override_settings(HUBSPOT_HTTP_TIMEOUT=timeout, HUBSPOT_REFRESH_LEASE=15):
        assert app_settings.REFRESH_LEASE == 15


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("k1", ["k1"]),
        (b"k1", [b"k1"]),
        (["k1", "k2"], ["k1", "k2"]),
        (("k1", "k2"), ["k1", "k2"]),
        ("", []),
        (None, []),
        ([], []),
    ],
)
def test_encryption_keys_are_always_a_list(value, expected):
    with override_settings(FIELD_ENCRYPTION_KEY=value):
        assert expected == app_settings.ENCRYPTION_KEYS


@pytest.mark.parametrize("value", ["", None])
def test_empty_optional_strings_mean_unset(value):
    with override_settings(HUBSPOT_REDIRECT_URI=value, HUBSPOT_CONNECT_PERMISSION=value):
        assert app_settings.REDIRECT_URI is None
        assert app_settings.CONNECT_PERMISSION is None


def test_optional_strings_are_returned_as_given():
    with override_settings(
        HUBSPOT_REDIRECT_URI="https://example.com/cb/",
        HUBSPOT_CONNECT_PERMISSION="myproject.perms.can_connect",
        HUBSPOT_SUCCESS_URL="dashboard",
        HUBSPOT_OAUTH_API_VERSION="2027-09",
        HUBSPOT_STATE_MAX_AGE="120",
        HUBSPOT_REFRESH_MARGIN=0,
    ):
        assert app_settings.REDIRECT_URI == "https://example.com/cb/"
        assert app_settings.CONNECT_PERMISSION == "myproject.perms.can_connect"
        assert app_settings.SUCCESS_URL == "dashboard"
        assert app_settings.OAUTH_API_VERSION == "2027-09"
        assert app_settings.STATE_MAX_AGE == 120
        assert app_settings.REFRESH_MARGIN == 0


def test_nothing_is_written_back_to_settings():
    from django.conf import settings

    before = {name for name in dir(settings._wrapped) if name.startswith("HUBSPOT_")}
    assert "HUBSPOT_CLIENT_ID" in before
    for name in dir(type(app_settings)):
        if name.isupper():
            getattr(app_settings, name)
    after = {name for name in dir(settings._wrapped) if name.startswith("HUBSPOT_")}
    assert after == before
