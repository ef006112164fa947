"""Django settings for the benchmark processes: a production-like minimum.

``BENCH_DATABASE_URL`` picks the database and ``BENCH_API_BASE_URL`` the fake HubSpot
server; ``benchmarks/run.py`` sets both for every process it starts.
"""

import os

import environ

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False  # DEBUG=True would keep every query in memory
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "encrypted_model_fields",
    "hubspot_connect",
]

DATABASES = {
    "default": environ.Env.db_url_config(
        os.environ.get("BENCH_DATABASE_URL", "sqlite:///benchmarks/results/bench.sqlite3")
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers from several threads take turns; they must wait for the lock, not fail.
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["timeout"] = 30
    # BENCH_SQLITE_PRAGMAS, e.g. "journal_mode=WAL;synchronous=NORMAL" (run.py's default).
    pragmas = [p.strip() for p in os.environ.get("BENCH_SQLITE_PRAGMAS", "").split(";")]
    if any(pragmas):
        options["init_command"] = "".join(f"PRAGMA {p};" for p in pragmas if p)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

FIELD_ENCRYPTION_KEY = "Hq4vVtI1WmQ0WvW8u5Jk2R9dNnS3wYQm9oQ0ZlZs7dE="
HUBSPOT_CLIENT_ID = "bench-client-id"
HUBSPOT_CLIENT_SECRET = "bench-client-secret"
HUBSPOT_SCOPES = ["oauth", "crm.objects.contacts.read"]
HUBSPOT_REDIRECT_URI = "http://127.0.0.1/hubspot/callback/"
HUBSPOT_API_BASE_URL = os.environ.get("BENCH_API_BASE_URL", "http://127.0.0.1:9")

# As in production: warnings and errors only, no per-refresh debug lines.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"hubspot_connect": {"level": "WARNING", "handlers": ["console"]}},
}
