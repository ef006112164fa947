"""Settings for the test suite: SQLite by default, any database via DATABASE_URL."""

import json
import os

import environ

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"

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
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": environ.Env.db_url_config(os.environ.get("DATABASE_URL", "sqlite:///:memory:"))
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file database (as the multi-process tests use) must wait for locks, not fail.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30


def apply_child_database_names(databases: dict[str, dict[str, object]]) -> None:
    """In a child process a test started: use the test databases the parent created
    (``HOST_SITE_DB_NAMES``, alias -> name)."""
    for alias, name in json.loads(os.environ.get("HOST_SITE_DB_NAMES", "{}")).items():
        if alias in databases:
            databases[alias]["NAME"] = name
            databases[alias]["TEST"] = {"NAME": name}


apply_child_database_names(DATABASES)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"
LOGIN_URL = "/accounts/login/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

FIELD_ENCRYPTION_KEY = "Hq4vVtI1WmQ0WvW8u5Jk2R9dNnS3wYQm9oQ0ZlZs7dE="
HUBSPOT_CLIENT_ID = "test-client-id"
HUBSPOT_CLIENT_SECRET = "test-client-secret-8d1f0c"
HUBSPOT_SCOPES = ["oauth", "crm.objects.contacts.read"]
HUBSPOT_OPTIONAL_SCOPES = ["crm.objects.deals.read"]
HUBSPOT_REDIRECT_URI = "https://testserver/hubspot/callback/"
if os.environ.get("HOST_SITE_API_BASE_URL"):  # a child process talking to FakeHubSpotServer
    HUBSPOT_API_BASE_URL = os.environ["HOST_SITE_API_BASE_URL"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"hubspot_connect": {"level": "DEBUG"}},
}
