"""System checks: every missing or wrong setting gets a stable id and a hint."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.urls import URLResolver, get_resolver
from django.utils.module_loading import import_string

from .budget_checks import check_rate_limits
from .conf import app_settings

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
DATED_VERSION = re.compile(r"\d{4}-\d{2}")


def _is_absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


@register(Tags.security, Tags.compatibility)
def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    errors += _check_credentials()
    errors += _check_scopes()
    errors += _check_urls()
    errors += _check_encryption_key()
    errors += _check_installed()
    errors += _check_numbers()
    errors += _check_connect_on_get()
    errors += _check_session_engine()
    errors += check_rate_limits()
    return errors


def _check_credentials() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if not app_settings.CLIENT_ID:
        errors.append(
            Error(
                "HUBSPOT_CLIENT_ID is not set.",
                hint="Copy the client id from your HubSpot app's Auth settings.",
                id="hubspot_connect.E001",
            )
        )
    if not app_settings.CLIENT_SECRET:
        errors.append(
            Error(
                "HUBSPOT_CLIENT_SECRET is not set.",
                hint="Copy the client secret from your HubSpot app's Auth settings; read it "
                "from the environment, never commit it.",
                id="hubspot_connect.E002",
            )
        )
    return errors


def _check_scopes() -> list[CheckMessage]:
    raw = getattr(settings, "HUBSPOT_SCOPES", None)
    scopes = app_settings.SCOPES
    if not raw or not scopes:
        return [
            Error(
                "HUBSPOT_SCOPES is not set.",
                hint='List the scopes your app requires, e.g. HUBSPOT_SCOPES = ["oauth", '
                '"crm.objects.contacts.read"]; they must match the app\'s required scopes.',
                id="hubspot_connect.E003",
            )
        ]
    errors: list[CheckMessage] = []
    if "oauth" not in scopes:
        errors.append(
            Error(
                "HUBSPOT_SCOPES does not include 'oauth'.",
                hint="HubSpot requires the 'oauth' scope for every app that uses OAuth.",
                id="hubspot_connect.E004",
            )
        )
    overlap = sorted(set(scopes) & set(app_settings.OPTIONAL_SCOPES))
    if overlap:
        errors.append(
            Error(
                "HUBSPOT_OPTIONAL_SCOPES repeats required scopes: " + ", ".join(overlap) + ".",
                hint="A scope is either required (HUBSPOT_SCOPES) or optional, not both.",
                id="hubspot_connect.E005",
            )
        )
    return errors


def _check_urls() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    redirect_uri = app_settings.REDIRECT_URI
    if redirect_uri is None:
        errors.append(
            Warning(
                "HUBSPOT_REDIRECT_URI is not set; it is built from each request's host.",
                hint="Set it to the exact redirect URL of your HubSpot app (the absolute URL "
                "of hubspot_connect:callback) so it cannot depend on the Host header.",
                id="hubspot_connect.W001",
            )
        )
    elif not _is_absolute(redirect_uri):
        errors.append(
            Error(
                "HUBSPOT_REDIRECT_URI must be an absolute http(s) URL.",
                hint="For example https://example.com/hubspot/callback/.",
                id="hubspot_connect.E006",
            )
        )
    elif (
        urlsplit(redirect_uri).scheme != "https"
        and not settings.DEBUG
        and urlsplit(redirect_uri).hostname not in LOCAL_HOSTS
    ):
        errors.append(
            Error(
                "HUBSPOT_REDIRECT_URI must use https outside DEBUG.",
                hint="HubSpot only allows plain http redirect URLs for localhost.",
                id="hubspot_connect.E007",
            )
        )
    for name, value in (
        ("HUBSPOT_AUTHORIZE_URL", app_settings.AUTHORIZE_URL),
        ("HUBSPOT_API_BASE_URL", app_settings.API_BASE_URL),
    ):
        if not _is_absolute(value):
            errors.append(
                Error(
                    f"{name} must be an absolute http(s) URL.",
                    hint="Leave it unset to use HubSpot's own URL.",
                    id="hubspot_connect.E014",
                )
            )
    if not DATED_VERSION.fullmatch(app_settings.OAUTH_API_VERSION):
        errors.append(
            Error(
                "HUBSPOT_OAUTH_API_VERSION must be a dated API version such as '2026-03'.",
                hint="HubSpot retires the v1 OAuth endpoints on 2027-02-16. Remove the "
                "setting to use 2026-03.",
                id="hubspot_connect.E015",
            )
        )
    path = app_settings.CONNECT_PERMISSION
    if path:
        try:
            check = import_string(path)
        except ImportError:
            check = None
        if not callable(check):
            errors.append(
                Error(
                    f"HUBSPOT_CONNECT_PERMISSION {path!r} is not an importable callable.",
                    hint="Give the dotted path of a function taking the request and "
                    "returning a bool.",
                    id="hubspot_connect.E013",
                )
            )
    return errors


def _check_encryption_key() -> list[CheckMessage]:
    keys = app_settings.ENCRYPTION_KEYS
    if not keys:
        return [
            Error(
                "FIELD_ENCRYPTION_KEY is not set; hubspot_connect encrypts tokens with it.",
                hint='Generate one with `python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"` and read it from the environment. '
                "A list of keys is allowed: the first encrypts.",
                id="hubspot_connect.E008",
            )
        ]
    for index, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            return [
                Error(
                    f"FIELD_ENCRYPTION_KEY (key {index + 1}) is not a valid Fernet key.",
                    hint="A Fernet key is 32 random bytes, url-safe base64 encoded (44 "
                    'characters); `python -c "from cryptography.fernet import Fernet; '
                    'print(Fernet.generate_key().decode())"` makes one.',
                    id="hubspot_connect.E009",
                )
            ]
    return []


def _check_installed() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    middleware = list(getattr(settings, "MIDDLEWARE", []) or [])
    if not apps.is_installed("django.contrib.sessions") and not any(
        "SessionMiddleware" in entry for entry in middleware
    ):
        errors.append(
            Error(
                "django.contrib.sessions is not installed.",
                hint="The OAuth state is kept in the session: add 'django.contrib.sessions' "
                "to INSTALLED_APPS and SessionMiddleware to MIDDLEWARE.",
                id="hubspot_connect.E010",
            )
        )
    elif not any("SessionMiddleware" in entry for entry in middleware):
        errors.append(
            Error(
                "SessionMiddleware is not in MIDDLEWARE.",
                hint="Add 'django.contrib.sessions.middleware.SessionMiddleware'; the OAuth "
                "state is kept in the session.",
                id="hubspot_connect.E010",
            )
        )
    if not apps.is_installed("django.contrib.messages"):
        errors.append(
            Error(
                "django.contrib.messages is not installed.",
                hint="The callback reports success with a message: add "
                "'django.contrib.messages' to INSTALLED_APPS and MessageMiddleware to "
                "MIDDLEWARE.",
                id="hubspot_connect.E011",
            )
        )
    elif not any("MessageMiddleware" in entry for entry in middleware):
        errors.append(
            Error(
                "MessageMiddleware is not in MIDDLEWARE.",
                hint="Add 'django.contrib.messages.middleware.MessageMiddleware'.",
                id="hubspot_connect.E011",
            )
        )
    return errors


def _check_numbers() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, default in (
        ("HUBSPOT_HTTP_TIMEOUT", 10),
        ("HUBSPOT_STATE_MAX_AGE", 600),
        ("HUBSPOT_REFRESH_LEASE", 60),
    ):
        value = getattr(settings, name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            errors.append(
                Error(
                    f"{name} must be a positive number of seconds.",
                    hint=f"Remove it to use the default ({default}).",
                    id="hubspot_connect.E012",
                )
            )
    retention = getattr(settings, "HUBSPOT_EVENT_RETENTION", 90)
    if isinstance(retention, bool) or not isinstance(retention, int) or retention < 1:
        errors.append(
            Error(
                "HUBSPOT_EVENT_RETENTION must be a whole number of days, 1 or more.",
                hint="Remove it to keep 90 days of connection history; "
                "`manage.py prune_hubspot_events` deletes what is older.",
                id="hubspot_connect.E030",
            )
        )
    margin = getattr(settings, "HUBSPOT_REFRESH_MARGIN", 300)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        errors.append(
            Error(
                "HUBSPOT_REFRESH_MARGIN must be a number of seconds, zero or more.",
                hint="Remove it to use the default (300).",
                id="hubspot_connect.E012",
            )
        )
    return errors


def _check_connect_on_get() -> list[CheckMessage]:
    value = getattr(settings, "HUBSPOT_CONNECT_ON_GET", False)
    if isinstance(value, bool):
        return []
    return [
        Error(
            "HUBSPOT_CONNECT_ON_GET must be True or False.",
            hint="Leave it unset (False): a GET of the connect view then shows a confirmation "
            "form and only its POST starts a flow. A string such as 'False' is not a bool.",
            id="hubspot_connect.E017",
        )
    ]


SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
UNSHARED_CACHES = {
    "django.core.cache.backends.dummy.DummyCache": "stores nothing",
    "django.core.cache.backends.locmem.LocMemCache": "is private to each process",
}


def _check_session_engine() -> list[CheckMessage]:
    engine = str(getattr(settings, "SESSION_ENGINE", "django.contrib.sessions.backends.db"))
    try:
        from django.contrib.sessions.backends.signed_cookies import SessionStore as Cookie

        in_cookie = issubclass(import_string(engine + ".SessionStore"), Cookie)
    except ImportError:
        in_cookie = engine == SIGNED_COOKIES
    if not in_cookie:
        return []
    errors: list[CheckMessage] = [
        Warning(
            "SESSION_ENGINE keeps the session in a cookie; hubspot_connect's pending OAuth "
            "flows (state, next URL) travel in it.",
            hint="Prefer a server-side engine (db, cache or cached_db). With signed cookies "
            "a replayed old cookie brings used states back, so their single use rests on the "
            "default cache, and each pending flow adds to the cookie's size.",
            id="hubspot_connect.W002",
        )
    ]
    backend = str(getattr(settings, "CACHES", {}).get("default", {}).get("BACKEND", ""))
    if backend in UNSHARED_CACHES:
        errors.append(
            Warning(
                f"The default cache ({backend.rsplit('.', 1)[-1]}) {UNSHARED_CACHES[backend]}, "
                "so with cookie sessions a used OAuth state can be replayed"
                + (" in another process." if "locmem" in backend else "."),
                hint="Point CACHES['default'] at a cache every process shares (Redis, "
                "Memcached, the database cache), or use a server-side SESSION_ENGINE.",
                id="hubspot_connect.W003",
            )
        )
    return errors


@register(Tags.security, Tags.urls)
def check_fake_server(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """FakeHubSpot's views (csrf_exempt, answering as HubSpot) must not run in production."""
    if settings.DEBUG:
        return []
    try:
        mounted = _fake_server_prefix(get_resolver().url_patterns, "")
    except Exception:  # a broken URLconf is for Django's own URL checks to report
        return []
    if mounted is None:
        return []
    return [
        Error(
            f"hubspot_connect.fake_server is mounted at '/{mounted}' while DEBUG is False.",
            hint="It is FakeHubSpot for development and tests: its views are csrf_exempt and "
            "answer as HubSpot to anyone. Include it only when DEBUG is on (or only in a "
            "development URLconf), never in production.",
            id="hubspot_connect.E016",
        )
    ]


def _fake_server_prefix(patterns: Sequence[Any], prefix: str) -> str | None:
    for pattern in patterns:
        here = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            module = getattr(pattern.urlconf_module, "__name__", "")
            if pattern.app_name == "hubspot_fake" or module == "hubspot_connect.fake_server":
                return here
            found = _fake_server_prefix(pattern.url_patterns, here)
            if found is not None:
                return found
        elif getattr(pattern.callback, "__module__", "") == "hubspot_connect.fake_server":
            return here
    return None
