"""Where the app stores what HubSpot answered: the routed database, outside the caller's
transaction.

Tokens HubSpot has issued must outlive the caller's transaction: with refresh-token
rotation, a refresh result that is rolled back is a portal lost. So when the code that
calls us is inside ``transaction.atomic()`` (``ATOMIC_REQUESTS`` included) on the
database that holds our rows, the lease and the token writes run on a second, autocommit
connection to that database, and every statement commits at once. No lock is then held
for the caller's transaction while HubSpot is being called.

When that second connection cannot get a lock the caller's own transaction holds (the
caller updated the row first, or SQLite in rollback-journal mode, where one reader blocks
every writer), the work falls back to the caller's connection, as before, with a warning.
Inside Django's ``TestCase`` nothing is durable anyway, so the caller's connection is used.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from django.core.signals import request_finished
from django.db import OperationalError, connections, router
from django.db.backends.base.base import BaseDatabaseWrapper

from .models import HubSpotConnection

logger = logging.getLogger("hubspot_connect")

#: How long the autocommit connection waits for a row lock before giving up (seconds).
#: Our own statements hold a lock for milliseconds; a longer wait means the caller's
#: transaction holds it, and waiting for that would wait forever.
LOCK_WAIT = 2

_local = threading.local()


def write_alias(instance: HubSpotConnection | None = None) -> str:
    """The database alias the router picks for writing ``instance`` (reads after a failed
    claim use it too: a lagging read replica must not answer them)."""
    return router.db_for_write(HubSpotConnection, instance=instance)


def in_caller_transaction(database: BaseDatabaseWrapper) -> bool:
    """Whether the caller has a transaction open on ``database`` that is not a TestCase's."""
    if database.in_atomic_block:
        return not any(getattr(block, "_from_testcase", False) for block in database.atomic_blocks)
    return database.connection is not None and not database.get_autocommit()


def _side_connection(alias: str) -> BaseDatabaseWrapper:
    """This thread's autocommit connection to ``alias``.

    With CONN_MAX_AGE = 0 (Django's default) it is closed after each block; otherwise it
    is kept like Django's own connections, closed at the end of a request once older than
    CONN_MAX_AGE, and replaced when a query on it failed and it no longer answers.
    """
    cached: dict[str, BaseDatabaseWrapper] = _local.__dict__.setdefault("side", {})
    database = cached.get(alias)
    if database is None:
        database = connections.create_connection(alias)
        cached[alias] = database
    if database.errors_occurred:
        database.close_if_unusable_or_obsolete()
    if database.connection is None:
        database.ensure_connection()
        _limit_lock_wait(database)
    return database


def _limit_lock_wait(database: BaseDatabaseWrapper) -> None:
    statements = {
        "postgresql": f"SET lock_timeout = '{LOCK_WAIT}s'",
        "mysql": f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT}",
        "sqlite": f"PRAGMA busy_timeout = {LOCK_WAIT * 1000}",
    }
    statement = statements.get(database.vendor)
    if statement:
        with database.cursor() as cursor:
            cursor.execute(statement)


def _sqlite_without_wal(database: BaseDatabaseWrapper) -> bool:
    """SQLite in a rollback-journal mode: a reading transaction blocks every other writer."""
    if database.vendor != "sqlite":
        return False
    with database.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        row = cursor.fetchone()
    return not row or str(row[0]).lower() != "wal"


def close_side_connections(**kwargs: Any) -> None:
    """Close this thread's side connections that are past their CONN_MAX_AGE."""
    for database in getattr(_local, "side", {}).values():
        database.close_if_unusable_or_obsolete()


request_finished.connect(close_side_connections, dispatch_uid="hubspot_connect.db")


class Durable:
    """Runs blocks of queries on ``alias`` so that they commit whatever the caller does.

    ``with durable.block():`` swaps this thread's connection for ``alias`` with the
    autocommit side connection for the duration of the block (only while the caller is in
    a transaction), so the ORM, ``update_or_create`` included, works unchanged inside it.
    Signals are sent outside the blocks, on the caller's connection, as receivers expect.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        caller = connections[alias]
        self.side = in_caller_transaction(caller)
        if self.side and _sqlite_without_wal(caller):
            self._fall_back("SQLite is not in WAL mode")

    def _fall_back(self, why: str) -> None:
        logger.warning(
            "Storing HubSpot tokens inside the caller's transaction on database %r (%s): "
            "if that transaction rolls back, the tokens HubSpot issued are lost. See "
            "'Transactions' in the docs.",
            self.alias,
            why,
        )
        self.side = False

    @contextlib.contextmanager
    def block(self, *, fallback: bool = False) -> Iterator[None]:
        """Queries in the block commit on their own. With ``fallback``, a lock the caller's
        transaction holds makes the block run again on the caller's connection."""
        if not self.side:
            yield
            return
        caller = connections[self.alias]
        side = _side_connection(self.alias)
        try:
            connections[self.alias] = side
            try:
                yield
            finally:
                connections[self.alias] = caller
                if side.settings_dict.get("CONN_MAX_AGE", 0) == 0:
                    side.close()  # the site keeps no connection open: nor do we
        except OperationalError as exc:
            if not fallback or not _is_lock_error(exc):
                raise
            self._fall_back("a lock held by the caller's transaction")
            raise RetryOnCaller from None


class RetryOnCaller(Exception):
    """Raised by :meth:`Durable.block` when the block must run again on the caller's connection."""


def _is_lock_error(exc: OperationalError) -> bool:
    text = str(exc).lower()
    return (
        any(
            marker in text
            for marker in (
                "lock timeout",
                "database is locked",
                "lock wait timeout",
                "locknotavailable",
            )
        )
        or type(exc.__cause__).__name__ == "LockNotAvailable"
    )
