"""What every host-site variant shares: the test suite's settings, on a file database.

A file database (SQLite in WAL mode by default; ``DATABASE_URL`` for another server) lets
the tests run ``manage.py`` commands in child processes against the data they created;
the children find the test databases through ``HOST_SITE_DB_NAMES`` (alias -> name)
and FakeHubSpotServer through ``HOST_SITE_API_BASE_URL``.
"""

import os
import tempfile
from pathlib import Path

import environ

from tests.settings import *  # noqa: F403
from tests.settings import apply_child_database_names

SITE_DIR = Path(os.environ.get("HOST_SITE_DIR") or tempfile.gettempdir()) / "hubspot-host-sites"
SITE_DIR.mkdir(parents=True, exist_ok=True)


def database(name: str, url: str | None = None) -> dict[str, object]:
    """A database for alias ``name``: ``url`` (or DATABASE_URL), else a SQLite file in WAL mode."""
    url = url or os.environ.get("DATABASE_URL")
    if url:
        config = environ.Env.db_url_config(url)
        config["TEST"] = {"NAME": f"test_hubspot_sites_{name}_{os.getpid()}"}
        return config
    path = str(SITE_DIR / f"{name}-{os.getpid()}.sqlite3")
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "TEST": {"NAME": path},
        # WAL: readers never block the writer; the app's second connection can write while
        # the caller's transaction is open (see hubspot_connect.db).
        "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=wal;"},
    }


DATABASES = {"default": database("default")}


apply_child_database_names(DATABASES)
