"""A database router puts hubspot_connect on its own alias, with a read replica.

``default`` holds users, sessions and the admin log and has no hubspot_connect table;
``hubspot`` holds the app's tables and nothing else: a query on the wrong alias fails.
``hubspot_replica`` is where the router sends reads; it mirrors ``hubspot`` unless a test
makes it lag (see ``tests.sites.routers``).
"""

from tests.settings import apply_child_database_names
from tests.sites.base import *  # noqa: F403
from tests.sites.base import database

DATABASES = {
    "default": database("default"),
    "hubspot": database("hubspot"),
    "hubspot_replica": database("hubspot_replica"),
}
apply_child_database_names(DATABASES)
DATABASE_ROUTERS = ["tests.sites.routers.HubSpotRouter"]
