"""Settings of the example project, read from the environment and an optional ``.env``.

Variables set in the environment win over ``.env`` (the repository root's, or the file
named by ``DEMO_ENV_FILE``). See ``.env.example`` for every variable.

Without ``HUBSPOT_CLIENT_ID`` the site runs against the built-in fake HubSpot
(``HUBSPOT_FAKE=1``), so it works with no HubSpot account; with a real app's
credentials it talks to HubSpot.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import environ

REPO_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(__file__).resolve().parent / "var"  # git-ignored
ENV_FILE = Path(os.environ.get("DEMO_ENV_FILE") or REPO_DIR / ".env")


class _Env(environ.Env):
    # A copy: reading .env must not leak into os.environ (or into other settings loads).
    ENVIRON = dict(os.environ)


_Env.read_env(ENV_FILE)
env = _Env()

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY (in .env) when DEBUG is off.")
    SECRET_KEY = "example-project-insecure-development-key"

# -- HubSpot: the built-in fake unless a real app is configured --------------------------

HUBSPOT_CLIENT_ID = env("HUBSPOT_CLIENT_ID", default="")
HUBSPOT_CLIENT_SECRET = env("HUBSPOT_CLIENT_SECRET", default="")
HUBSPOT_FAKE = env.bool("HUBSPOT_FAKE", default=not HUBSPOT_CLIENT_ID)

# Where people reach the site; the fake HubSpot's URLs and the redirect URL are built
# from it, so DEMO_PORT=8001 just works. Against real HubSpot it is the origin of
# HUBSPOT_REDIRECT_URI (the session cookie must be sent back to the callback), and
# localhost by default, since HubSpot allows plain http only for localhost.
DEMO_HOST = env("DEMO_HOST", default="127.0.0.1")
DEMO_PORT = env.int("DEMO_PORT", default=8000)
if HUBSPOT_FAKE:
    _host = "127.0.0.1" if DEMO_HOST in ("0.0.0.0", "::", "") else DEMO_HOST  # noqa: S104
    _host = f"[{_host}]" if ":" in _host and not _host.startswith("[") else _host
    _origin = f"http://{_host}:{DEMO_PORT}"
elif env("HUBSPOT_REDIRECT_URI", default=""):
    _parts = urlsplit(env("HUBSPOT_REDIRECT_URI"))
    _origin = f"{_parts.scheme}://{_parts.netloc}"
else:
    _origin = f"http://localhost:{DEMO_PORT}"
DEMO_URL = env("DEMO_URL", default=_origin).rstrip("/")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
if urlsplit(DEMO_URL).hostname and urlsplit(DEMO_URL).hostname not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(str(urlsplit(DEMO_URL).hostname))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "encrypted_model_fields",
    "hubspot_connect",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).resolve().parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "example_project.views.demo_context",
            ]
        },
    }
]

if "DATABASE_URL" not in env.ENVIRON:
    VAR_DIR.mkdir(exist_ok=True)
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # runserver is threaded: let a second writer wait instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = env("TIME_ZONE", default="UTC")
LANGUAGE_CODE = "en-us"
STATIC_URL = "/static/"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# -- hubspot_connect ----------------------------------------------------------------------

FIELD_ENCRYPTION_KEY = env("FIELD_ENCRYPTION_KEY", default="")
HUBSPOT_SCOPES = env("HUBSPOT_SCOPES", default="oauth crm.objects.contacts.read").split()
HUBSPOT_OPTIONAL_SCOPES = env("HUBSPOT_OPTIONAL_SCOPES", default="").split()
HUBSPOT_REDIRECT_URI = env("HUBSPOT_REDIRECT_URI", default=f"{DEMO_URL}/hubspot/callback/")
if HUBSPOT_FAKE:
    from hubspot_connect.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    HUBSPOT_CLIENT_ID = DEFAULT_CLIENT_ID
    HUBSPOT_CLIENT_SECRET = DEFAULT_CLIENT_SECRET
    HUBSPOT_REDIRECT_URI = f"{DEMO_URL}/hubspot/callback/"
    HUBSPOT_AUTHORIZE_URL = f"{DEMO_URL}/fake-hubspot/oauth/authorize"
    HUBSPOT_API_BASE_URL = f"{DEMO_URL}/fake-hubspot/api"
    HUBSPOT_FAKE_STORE = env("HUBSPOT_FAKE_STORE", default=str(VAR_DIR / "fake-hubspot.json"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "example_project.log_filters.RedactQuerySecrets"}},
    "formatters": {
        "server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        # runserver's access log, minus the authorization code in the callback's URL.
        "server": {"class": "logging.StreamHandler", "formatter": "server", "filters": ["redact"]},
    },
    "loggers": {
        "hubspot_connect": {"handlers": ["console"], "level": "INFO"},
        "django.server": {"handlers": ["server"], "level": "INFO", "propagate": False},
    },
}
