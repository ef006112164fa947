"""System checks: each bad setting has its own id, and good settings raise nothing."""

from __future__ import annotations

import sys
import types
from io import StringIO
from typing import Any

import pytest
from django.contrib.sessions.backends.signed_cookies import (
    SessionStore as SignedCookieSessionStore,
)
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.urls import include, path

from hubspot_connect import fake_server
from hubspot_connect.checks import check_fake_server, check_settings

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
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
SHARED_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache"}
}


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
    ("hubspot_connect.E030", {"HUBSPOT_EVENT_RETENTION": 0}),
    ("hubspot_connect.E030", {"HUBSPOT_EVENT_RETENTION": "90"}),
    ("hubspot_connect.E030", {"HUBSPOT_EVENT_RETENTION": 7.5}),
    ("hubspot_connect.E030", {"HUBSPOT_EVENT_RETENTION": True}),
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
    ("hubspot_connect.E017", {"HUBSPOT_CONNECT_ON_GET": "False"}),
    ("hubspot_connect.E017", {"HUBSPOT_CONNECT_ON_GET": 1}),
    ("hubspot_connect.E017", {"HUBSPOT_CONNECT_ON_GET": None}),
    ("hubspot_connect.W002", {"SESSION_ENGINE": SIGNED_COOKIES, "CACHES": SHARED_CACHE}),
]


@pytest.mark.parametrize(("check_id", "overrides"), BAD_SETTINGS)
def test_each_bad_setting_has_its_id(check_id, overrides):
    with override_settings(**overrides):
        messages = check_settings()
    assert [m.id for m in messages] == [check_id]
    (message,) = messages
    assert message.hint
    assert isinstance(message, Warning if ".W" in check_id else Error)


@pytest.mark.parametrize(("check_id", "overrides"), BAD_SETTINGS)
def test_manage_py_check_reports_it(check_id, overrides):
    out, err = StringIO(), StringIO()
    with override_settings(**overrides):
        if ".W" in check_id:
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


# -- sessions kept in a cookie (W002, W003) --------------------------------------------------


class CookieSessionStore(SignedCookieSessionStore):
    """A site's own engine built on signed cookies."""


SessionStore = CookieSessionStore  # this module as a SESSION_ENGINE


@pytest.mark.parametrize(
    ("backend", "words"),
    [
        ("django.core.cache.backends.locmem.LocMemCache", "private to each process"),
        ("django.core.cache.backends.dummy.DummyCache", "stores nothing"),
    ],
)
def test_cookie_sessions_with_an_unshared_cache_warn_twice(backend, words):
    with override_settings(
        SESSION_ENGINE=SIGNED_COOKIES, CACHES={"default": {"BACKEND": backend}}
    ):
        messages = check_settings()
    assert [m.id for m in messages] == ["hubspot_connect.W002", "hubspot_connect.W003"]
    assert all(isinstance(m, Warning) and m.hint for m in messages)
    assert words in messages[1].msg
    assert "SESSION_ENGINE" in messages[0].msg


def test_a_session_engine_built_on_signed_cookies_warns_too():
    assert ids(SESSION_ENGINE=__name__, CACHES=SHARED_CACHE) == ["hubspot_connect.W002"]


@pytest.mark.parametrize(
    "engine",
    [
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.backends.cache",
        "django.contrib.sessions.backends.cached_db",
        "django.contrib.sessions.backends.file",
        "no.such.engine",
    ],
)
def test_server_side_sessions_need_no_shared_cache(engine):
    assert ids(SESSION_ENGINE=engine) == []  # the test settings' cache is LocMemCache


# -- the development fake mounted in production (E016) ------------------------------------------


@pytest.fixture
def root_urlconf(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``use(patterns)`` makes ``patterns`` the root URLconf (as a module)."""

    def use(patterns: list[Any]) -> str:
        module = types.ModuleType("tests._check_urlconf")
        module.urlpatterns = patterns  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return module.__name__

    return use


def fake_server_errors(urlconf: str, *, debug: bool = False) -> list[Any]:
    with override_settings(ROOT_URLCONF=urlconf, DEBUG=debug):
        return check_fake_server()


@pytest.mark.parametrize(
    ("patterns", "where"),
    [
        ([path("fake-hubspot/", include("hubspot_connect.fake_server"))], "/fake-hubspot/"),
        (
            [path("dev/", include([path("hs/", include("hubspot_connect.fake_server"))]))],
            "/dev/hs/",
        ),
        ([path("x/", include((fake_server.urlpatterns, "hubspot_fake")))], "/x/"),
        ([path("y/", include(fake_server.urlpatterns))], "/y/oauth/authorize"),
        ([path("z/", fake_server.api)], "/z/"),
    ],
)
def test_fake_server_mounted_without_debug_is_an_error(root_urlconf, patterns, where):
    messages = fake_server_errors(root_urlconf(patterns))
    assert [m.id for m in messages] == ["hubspot_connect.E016"]
    (message,) = messages
    assert isinstance(message, Error)
    assert f"'{where}'" in message.msg
    assert "DEBUG" in message.hint
    assert "csrf_exempt" in message.hint


def test_fake_server_with_debug_on_is_fine(root_urlconf):
    urlconf = root_urlconf([path("fake-hubspot/", include("hubspot_connect.fake_server"))])
    assert fake_server_errors(urlconf, debug=True) == []


def test_the_apps_own_urls_are_fine():
    assert fake_server_errors("tests.urls") == []
    assert fake_server_errors("example_project.urls") == []  # mounts it only with HUBSPOT_FAKE


def test_a_broken_urlconf_is_left_to_djangos_own_checks(root_urlconf):
    assert fake_server_errors("tests.no_such_urlconf") == []


def test_manage_py_check_fails_on_the_mounted_fake(root_urlconf):
    urlconf = root_urlconf([path("fake-hubspot/", include("hubspot_connect.fake_server"))])
    with (
        override_settings(ROOT_URLCONF=urlconf),
        pytest.raises(SystemCheckError, match=r"hubspot_connect\.E016"),
    ):
        call_command("check", stdout=StringIO(), stderr=StringIO())


# -- the shared request budget (hubspot_connect.budget_checks) --------------------------------

REDIS = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://x:6379"}


@pytest.mark.parametrize(
    ("check_id", "overrides"),
    [
        ("hubspot_connect.E020", {"HUBSPOT_RATE_LIMIT": 110}),
        ("hubspot_connect.E020", {"HUBSPOT_RATE_LIMIT": (110,)}),
        ("hubspot_connect.E020", {"HUBSPOT_RATE_LIMIT": (0, 10)}),
        ("hubspot_connect.E020", {"HUBSPOT_RATE_LIMIT": (110, -1)}),
        ("hubspot_connect.E020", {"HUBSPOT_RATE_LIMIT": (110.5, 10)}),
        ("hubspot_connect.E020", {"HUBSPOT_RATE_LIMIT": ("110", 10)}),
        ("hubspot_connect.E020", {"HUBSPOT_RATE_LIMIT": (True, 10)}),
        ("hubspot_connect.E020", {"HUBSPOT_RATE_LIMIT": (110, float("inf"))}),
        ("hubspot_connect.E021", {"HUBSPOT_SEARCH_RATE_LIMIT": "5/s"}),
        ("hubspot_connect.E022", {"HUBSPOT_RATE_LIMIT_CACHE": "budget"}),
        ("hubspot_connect.E022", {"HUBSPOT_RATE_LIMIT_CACHE": None}),
    ],
)
def test_bad_budget_settings(check_id, overrides):
    with override_settings(**overrides):
        messages = check_settings()
    assert [m.id for m in messages] == [check_id]
    assert isinstance(messages[0], Error)
    assert messages[0].hint
    setting = next(iter(overrides))
    assert setting in messages[0].msg


@pytest.mark.parametrize(
    "overrides",
    [
        {"HUBSPOT_RATE_LIMIT": None, "HUBSPOT_SEARCH_RATE_LIMIT": None},
        {"HUBSPOT_RATE_LIMIT": [100, 10.0], "HUBSPOT_SEARCH_RATE_LIMIT": (4, 1)},
        {"HUBSPOT_RATE_LIMIT_CACHE": "budget", "CACHES": {"default": REDIS, "budget": REDIS}},
        # Switched off, the alias is not used and not checked.
        {
            "HUBSPOT_RATE_LIMIT": None,
            "HUBSPOT_SEARCH_RATE_LIMIT": None,
            "HUBSPOT_RATE_LIMIT_CACHE": "nowhere",
        },
    ],
)
def test_good_budget_settings(overrides):
    assert ids(**overrides) == []


def test_bad_budget_settings_stop_the_app_reading_them(settings):
    from django.core.exceptions import ImproperlyConfigured

    from hubspot_connect.conf import app_settings

    settings.HUBSPOT_RATE_LIMIT = (1, 0)
    with pytest.raises(ImproperlyConfigured, match="HUBSPOT_RATE_LIMIT"):
        app_settings.RATE_LIMIT  # noqa: B018
    settings.HUBSPOT_SEARCH_RATE_LIMIT = None
    assert app_settings.SEARCH_RATE_LIMIT is None


@pytest.mark.parametrize(
    ("backend", "check_id"),
    [
        ("django.core.cache.backends.locmem.LocMemCache", "hubspot_connect.W005"),
        ("django.core.cache.backends.dummy.DummyCache", "hubspot_connect.W006"),
        ("django.core.cache.backends.db.DatabaseCache", "hubspot_connect.W007"),
        ("django.core.cache.backends.filebased.FileBasedCache", "hubspot_connect.W007"),
        ("django.core.cache.backends.redis.RedisCache", None),
        ("django.core.cache.backends.memcached.PyMemcacheCache", None),
        ("no.such.Backend", None),  # Django's own checks report that one
    ],
)
def test_the_budgets_cache_is_checked_at_deploy_time(backend, check_id):
    from django.core.checks import run_checks

    from hubspot_connect.budget_checks import check_rate_limit_cache

    with override_settings(CACHES={"default": {"BACKEND": backend, "LOCATION": "x"}}):
        messages = check_rate_limit_cache()
        with override_settings(HUBSPOT_RATE_LIMIT=None, HUBSPOT_SEARCH_RATE_LIMIT=None):
            off = check_rate_limit_cache()
        if check_id:  # through Django's registry: a deployment check only
            deploy = [m.id for m in run_checks(include_deployment_checks=True)]
            assert check_id in deploy
            assert check_id not in [m.id for m in run_checks()]
    assert [m.id for m in messages] == ([check_id] if check_id else [])
    assert all(isinstance(m, Warning) and m.hint for m in messages)
    assert off == []


def test_the_deploy_check_names_the_alias():
    from hubspot_connect.budget_checks import check_rate_limit_cache

    locmem = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    with override_settings(
        CACHES={"default": REDIS, "budget": locmem}, HUBSPOT_RATE_LIMIT_CACHE="budget"
    ):
        (message,) = check_rate_limit_cache()
    assert "'budget'" in message.msg
    assert "each process" in message.msg
    with override_settings(HUBSPOT_RATE_LIMIT_CACHE="nowhere"):
        assert check_rate_limit_cache() == []  # E022 says it
