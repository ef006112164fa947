"""MariaDB (or MySQL) through mysqlclient: ``MARIADB_URL``, default root on 127.0.0.1."""

import os

from tests.settings import apply_child_database_names
from tests.sites.base import *  # noqa: F403
from tests.sites.base import database

DATABASES = {
    "default": database(
        "default", os.environ.get("MARIADB_URL", "mysql://root@127.0.0.1:3306/hubspot_sites")
    )
}
DATABASES["default"]["OPTIONS"] = {"charset": "utf8mb4"}
apply_child_database_names(DATABASES)
