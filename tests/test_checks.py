"""System checks: each bad setting has its own id, and good settings raise nothing."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from hubspot_connect.checks import check_settings

GOOD_KEY = "Hq4vVtI1WmQ0WvW8u5Jk2R9dNnS3wYQm9oQ0ZlZs7dE="
OTHER_KEY = "2vC3PZ3wN0mXqg9n6g8M2iJ8q1n0XbYk8l3kqH8x0mE="
BASE_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]


def not_a_callable() -> None:
    pass


NOT_CALLABLE = 42


def ids(**overrides: Any) -> list[str]:
    with override_settings(**overrides):
        return [message.id for message in check_settings()]


def test_the_test_settings_are_clean():
    assert check_settings() == []


def test_the_check_is_registered_and_passes_through_manage_py_check():
    out = StringIO()
    call_command("check", stdout=out, stderr=StringIO())
    assert "no issues" in out.getvalue()


BAD_SETTINGS = [
    ("hubspot_connect.E001", {"HUBSPOT_CLIENT_ID": ""}),
    ("hubspot_connect.E001", {"HUBSPOT_CLIENT_ID": None}),
    ("hubspot_connect.E002", {"HUBSPOT_CLIENT_SECRET": ""}),
    ("hubspot_connect.E003", {"HUBSPOT_SCOPES": []}),
    ("hubspot_connect.E003", {"HUBSPOT_SCOPES": "  "}),
    ("hubspot_connect.E003", {"HUBSPOT_SCOPES": 5}),
    ("hubspot_connect.E004", {"HUBSPOT_SCOPES": ["crm.objects.contacts.read"]}),
    (
        "hubspot_connect.E005",
        {"HUBSPOT_OPTIONAL_SCOPES": ["crm.objects.contacts.read", "tickets"]},
    ),
    ("hubspot_connect.E006", {"HUBSPOT_REDIRECT_URI": "/hubspot/callback/"}),
    ("hubspot_connect.E006", {"HUBSPOT_REDIRECT_URI": "ftp://example.com/cb/"}),
    ("hubspot_connect.E007", {"HUBSPOT_REDIRECT_URI": "http://example.com/cb/"}),
    ("hubspot_connect.E008", {"FIELD_ENCRYPTION_KEY": ""}),
    ("hubspot_connect.E008", {"FIELD_ENCRYPTION_KEY": []}),
    ("hubspot_connect.E009", {"FIELD_ENCRYPTION_KEY": "not-a-fernet-key"}),
    ("hubspot_connect.E009", {"FIELD_ENCRYPTION_KEY": [GOOD_KEY, "short"]}),
    ("hubspot_connect.E010", {"MIDDLEWARE": BASE_MIDDLEWARE[1:]}),
    ("hubspot_connect.E011", {"MIDDLEWARE": BASE_MIDDLEWARE[:2]}),
    ("hubspot_connect.E012", {"HUBSPOT_HTTP_TIMEOUT": 0}),
    ("hubspot_connect.E012", {"HUBSPOT_HTTP_TIMEOUT": "10"}),
    ("hubspot_connect.E012", {"HUBSPOT_HTTP_TIMEOUT": True}),
    ("hubspot_connect.E012", {"HUBSPOT_STATE_MAX_AGE": -1}),
    ("hubspot_connect.E012", {"HUBSPOT_REFRESH_LEASE": 0}),
    ("hubspot_connect.E012", {"HUBSPOT_REFRESH_MARGIN": -1}),
    ("hubspot_connect.E012", {"HUBSPOT_REFRESH_MARGIN": "300"}),
    ("hubspot_connect.E013", {"HUBSPOT_CONNECT_PERMISSION": "nowhere.at_all"}),
    ("hubspot_connect.E013", {"HUBSPOT_CONNECT_PERMISSION": "nodots"}),
    ("hubspot_connect.E013", {"HUBSPOT_CONNECT_PERMISSION": "tests.test_checks.NOT_CALLABLE"}),
    ("hubspot_connect.E013", {"HUBSPOT_CONNECT_PERMISSION": not_a_callable}),
    ("hubspot_connect.E014", {"HUBSPOT_AUTHORIZE_URL": "app.hubspot.com/oauth/authorize"}),
    ("hubspot_connect.E014", {"HUBSPOT_API_BASE_URL": "/api"}),
    ("hubspot_connect.E015", {"HUBSPOT_OAUTH_API_VERSION": "v1"}),
    ("hubspot_connect.E015", {"HUBSPOT_OAUTH_API_VERSION": "2026-03/../v1"}),
    ("hubspot_connect.W001", {"HUBSPOT_REDIRECT_URI": None}),
    ("hubspot_connect.W001", {"HUBSPOT_REDIRECT_URI": ""}),
]


@pytest.mark.parametrize(("check_id", "overrides"), BAD_SETTINGS)
def test_each_bad_setting_has_its_id(check_id, overrides):
    with override_settings(**overrides):
        messages = check_settings()
    assert [m.id for m in messages] == [check_id]
    (message,) = messages
    assert message.hint
    assert isinstance(message, Warning if check_id.endswith("W001") else Error)


@pytest.mark.parametrize(("check_id", "overrides"), BAD_SETTINGS)
def test_manage_py_check_reports_it(check_id, overrides):
    out, err = StringIO(), StringIO()
    with override_settings(**overrides):
        if check_id.endswith("W001"):
            call_command("check", stdout=out, stderr=err)
            assert check_id in err.getvalue()
        else:
            with pytest.raises(SystemCheckError, match=check_id.replace(".", r"\.")):
                call_command("check", stdout=out, stderr=err)


def test_an_unset_scopes_setting(settings):
    del settings.HUBSPOT_SCOPES
    assert ids() == ["hubspot_connect.E003"]


def test_an_unset_key_setting(settings):
    del settings.FIELD_ENCRYPTION_KEY
    assert ids() == ["hubspot_connect.E008"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"HUBSPOT_REDIRECT_URI": "http://localhost:8000/hubspot/callback/"},
        {"HUBSPOT_REDIRECT_URI": "http://127.0.0.1:8000/hubspot/callback/"},
        {"HUBSPOT_REDIRECT_URI": "http://[::1]:8000/hubspot/callback/"},
        {"HUBSPOT_REDIRECT_URI": "http://example.com/cb/", "DEBUG": True},
        {"HUBSPOT_SCOPES": "oauth tickets"},
        {"HUBSPOT_OPTIONAL_SCOPES": []},
        {"FIELD_ENCRYPTION_KEY": [OTHER_KEY, GOOD_KEY]},
        {"FIELD_ENCRYPTION_KEY": GOOD_KEY.encode()},
        {"HUBSPOT_HTTP_TIMEOUT": 2.5, "HUBSPOT_REFRESH_MARGIN": 0},
        {"HUBSPOT_CONNECT_PERMISSION": "tests.test_checks.not_a_callable"},
        {"HUBSPOT_OAUTH_API_VERSION": "2027-09"},
        {"HUBSPOT_API_BASE_URL": "http://127.0.0.1:8001/"},
    ],
)
def test_good_variants_raise_nothing(overrides):
    assert ids(**overrides) == []


def test_sessions_app_missing_with_no_middleware():
    from django.conf import settings

    apps = [a for a in settings.INSTALLED_APPS if a != "django.contrib.sessions"]
    middleware = [m for m in settings.MIDDLEWARE if "SessionMiddleware" not in m]
    assert "hubspot_connect.E010" in ids(INSTALLED_APPS=apps, MIDDLEWARE=middleware)


def test_a_custom_session_engine_needs_no_sessions_app():
    from django.conf import settings

    apps = [a for a in settings.INSTALLED_APPS if a != "django.contrib.sessions"]
    assert "hubspot_connect.E010" not in ids(
        INSTALLED_APPS=apps, SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies"
    )


def test_messages_app_missing():
    from django.conf import settings

    apps = [a for a in settings.INSTALLED_APPS if a != "django.contrib.messages"]
    assert "hubspot_connect.E011" in ids(INSTALLED_APPS=apps)


def test_several_problems_are_all_reported():
    found = ids(HUBSPOT_CLIENT_ID="", HUBSPOT_CLIENT_SECRET="", FIELD_ENCRYPTION_KEY=None)
    assert found == ["hubspot_connect.E001", "hubspot_connect.E002", "hubspot_connect.E008"]


def test_messages_name_the_setting():
    with override_settings(HUBSPOT_HTTP_TIMEOUT=-5, HUBSPOT_API_BASE_URL="nope"):
        texts = [m.msg for m in check_settings()]
    assert any("HUBSPOT_HTTP_TIMEOUT" in t for t in texts)
    assert any("HUBSPOT_API_BASE_URL" in t for t in texts)
