"""Settings for the refresh processes the crash tests start and kill.

The database (a temporary SQLite file or MariaDB database) and HubSpot's URL (a
FakeHubSpot served over HTTP by the test process) come from the environment.
"""

import os

import environ

from tests.settings import *  # noqa: F403

DATABASES = {"default": environ.Env.db_url_config(os.environ["DATABASE_URL"])}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
HUBSPOT_API_BASE_URL = os.environ["HUBSPOT_API_BASE_URL"]
HUBSPOT_HTTP_TIMEOUT = float(os.environ.get("HUBSPOT_HTTP_TIMEOUT", "1.5"))
HUBSPOT_REFRESH_LEASE = int(os.environ.get("HUBSPOT_REFRESH_LEASE", "2"))
LOGGING = {"version": 1, "disable_existing_loggers": False}
