"""The router of the ``router`` host site (see ``tests/sites/router.py``)."""

from __future__ import annotations

from typing import Any

APP = "hubspot_connect"


class HubSpotRouter:
    #: Reads go to the replica only while a test makes it lag behind; otherwise to the
    #: primary (a replica that is up to date answers the same).
    lagging_replica = False

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        if model._meta.app_label == APP:
            return "hubspot_replica" if self.lagging_replica else "hubspot"
        return "default"

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "hubspot" if model._meta.app_label == APP else "default"

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return True  # connected_by points at a user on the other database

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        if app_label == APP:
            return db in ("hubspot", "hubspot_replica")
        return db == "default"
