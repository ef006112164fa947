"""A refresh process killed with SIGKILL at any point loses no tokens and strands no row.

Real processes (``python -m django refresh_hubspot_tokens``) on a temporary SQLite file,
and on a fresh MariaDB database (skipped when no server answers on 127.0.0.1:3306 or at
MARIADB_URL), talk over real HTTP to a FakeHubSpot served by this test process. The lease
is 2 s, so the run after a crash can pick up what the dead one claimed.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from hubspot_connect.fields import decrypt
from hubspot_connect.testing import FakeHubSpot
from tests.hardening.server import FakeHubSpotServer, serve

ROOT = Path(__file__).resolve().parent.parent
CHILD = ROOT / "tests" / "hardening" / "crash_child.py"
SETTINGS = "tests.hardening.crash_settings"
LEASE = 2
PORTALS = [7001, 7002, 7003, 7004]

pytestmark = pytest.mark.slow


@dataclass
class Row:
    portal_id: int
    access_token: str
    refresh_token: str
    status: str
    lease_expires_at: datetime | None
    expires_at: datetime | None


def _env(database: str, server: FakeHubSpotServer) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        DATABASE_URL=database,
        HUBSPOT_API_BASE_URL=server.url,
        HUBSPOT_REFRESH_LEASE=str(LEASE),
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _parse(value: str | datetime | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc)  # both store UTC when USE_TZ = True


DUMP = (
    "SELECT portal_id, access_token, refresh_token, status, lease_expires_at, "
    "expires_at FROM hubspot_connect_hubspotconnection"
)


def dump(database: str) -> dict[int, Row]:
    """The rows as stored, read past Django (SQLite: sqlite3; MariaDB: MySQLdb)."""
    parts = urlsplit(database)
    if parts.scheme == "sqlite":
        with sqlite3.connect(parts.path) as db:
            rows = db.execute(DUMP).fetchall()
    else:
        with contextlib.closing(_mysql(database)) as db:
            cursor = db.cursor()
            cursor.execute(DUMP)
            rows = cursor.fetchall()
    return {
        portal: Row(portal, decrypt(access), decrypt(refresh), status, _parse(lease), _parse(exp))
        for portal, access, refresh, status, lease, exp in rows
    }


def _mysql(url: str) -> Any:
    import MySQLdb

    parts = urlsplit(url)
    return MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/") or None,
        connect_timeout=2,
    )


def _mariadb_server() -> str | None:
    url = os.environ.get("MARIADB_URL") or "mysql://root@127.0.0.1:3306/mysql"
    try:
        _mysql(url).close()
    except Exception:
        return None
    return url


@dataclass
class Template:
    """``PORTALS`` due for refresh, and the fake's state: a migrated file database to copy
    (SQLite), or the rows to set up in a fresh database (MariaDB)."""

    backend: str
    rows: list[dict[str, Any]]
    database: Path | None
    fake_data: dict[str, Any]
    seeded: dict[int, tuple[str, str]]


def _setup(database: str, rows: list[dict[str, Any]]) -> None:
    env = {**os.environ, "DATABASE_URL": database, "HUBSPOT_API_BASE_URL": "http://x"}
    subprocess.run(
        [sys.executable, str(CHILD), "setup", json.dumps(rows)], env=env, check=True, timeout=120
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)]
)
def template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Template:
    fake = FakeHubSpot()
    seeded, rows = {}, []
    for portal in PORTALS:
        issued = fake.issue_tokens(portal, ["oauth"])
        seeded[portal] = (issued["access_token"], issued["refresh_token"])
        # Due for refresh (and refreshed in portal order) however long the module runs.
        rows.append({**issued, "portal_id": portal, "expires_in": portal % 10})
    path = None
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("crash") / "template.sqlite3"
        _setup(f"sqlite:///{path}", rows)
    elif _mariadb_server() is None:
        pytest.importorskip("MySQLdb", reason="mysqlclient is not installed (make test-mariadb)")
        pytest.skip("no MariaDB server on 127.0.0.1:3306 (or MARIADB_URL)")
    with fake.store.transaction() as data:
        return Template(request.param, rows, path, copy.deepcopy(data), seeded)


@dataclass
class Scenario:
    fake: FakeHubSpot
    server: FakeHubSpotServer
    database: str
    seeded: dict[int, tuple[str, str]]

    def spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "refresh_hubspot_tokens",
                f"--settings={SETTINGS}",
                "--concurrency",
                "1",
                "--retries",
                "0",
            ],
            env=_env(self.database, self.server),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def run(self) -> tuple[int, str]:
        child = self.spawn()
        out, err = child.communicate(timeout=60)
        return child.returncode, out.decode() + err.decode()

    def wait_for_leases(self) -> None:
        """Sleep until no lease a dead worker left is still running."""
        leases = [row.lease_expires_at for row in dump(self.database).values()]
        latest = max((lease for lease in leases if lease is not None), default=None)
        if latest is not None:
            time.sleep(max(0.0, (latest - datetime.now(timezone.utc)).total_seconds()) + 0.2)

    def check_nothing_lost(self) -> dict[int, Row]:
        """Each row holds a whole token pair HubSpot issued for its portal, or was kept."""
        rows = dump(self.database)
        assert set(rows) == set(self.seeded)
        for portal, row in rows.items():
            assert row.access_token
            assert row.refresh_token
            assert self.fake.access_token_portal(row.access_token) == portal
            assert self.fake.refresh_token_portal(row.refresh_token) == portal
            assert row.status in ("active", "needs_reauth")
        return rows

    def check_recovered(self, *, reauth_allowed: set[int] | None = None) -> dict[int, Row]:
        reauth_allowed = reauth_allowed or set()
        rows = self.check_nothing_lost()
        for portal, row in rows.items():
            assert row.lease_expires_at is None, f"portal {portal} is stuck under a lease"
            if row.status == "needs_reauth":
                assert portal in reauth_allowed, f"portal {portal} lost its refresh token"
                # Only because HubSpot rotated its token for a request whose answer was lost.
                assert not self.fake.is_live_refresh_token(self.seeded[portal][1])
                continue
            assert self.fake.is_live_refresh_token(row.refresh_token)
            assert row.access_token != self.seeded[portal][0], f"portal {portal} not refreshed"
            assert row.expires_at is not None
            assert row.expires_at > datetime.now(timezone.utc)
        return rows


@pytest.fixture
def scenario(template: Template, tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    with ExitStack() as stack:

        def make(*, rotate: bool, latency: float = 0.0) -> Scenario:
            fake = FakeHubSpot(rotate_refresh_tokens=rotate, latency=latency)
            with fake.store.transaction() as data:
                data.update(copy.deepcopy(template.fake_data))
            server = stack.enter_context(serve(fake))
            if template.database is not None:
                shutil.copy(template.database, tmp_path / "db.sqlite3")
                database = f"sqlite:///{tmp_path / 'db.sqlite3'}"
            else:
                database = stack.enter_context(_mariadb_database())
                _setup(database, template.rows)
            return Scenario(fake, server, database, template.seeded)

        yield make


@contextlib.contextmanager
def _mariadb_database() -> Iterator[str]:
    server = _mariadb_server()
    assert server is not None
    name = f"hubspot_crash_{uuid.uuid4().hex[:12]}"
    with contextlib.closing(_mysql(server)) as admin:
        admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        try:
            yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        finally:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")


def _kill(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL


def test_killed_before_the_claim(scenario: Callable[..., Scenario]) -> None:
    crash = scenario(rotate=True)
    child = crash.spawn()
    time.sleep(0.05)  # still starting Python and Django
    _kill(child)
    assert crash.fake.refresh_calls() == 0
    crash.check_nothing_lost()
    status, output = crash.run()
    assert status == 0, output
    crash.check_recovered()


@pytest.mark.parametrize("rotate", [False, True], ids=["same-refresh-token", "rotated"])
def test_killed_while_waiting_for_hubspot(scenario: Callable[..., Scenario], rotate: bool) -> None:
    crash = scenario(rotate=rotate, latency=1.0)
    child = crash.spawn()
    assert crash.server.received.wait(30), "the child never called HubSpot"
    _kill(child)
    # HubSpot still answers the dead worker's request (and rotates if it rotates).
    assert crash.server.handled.wait(10)
    first = PORTALS[0]
    rows = crash.check_nothing_lost()
    assert rows[first].lease_expires_at is not None, "the dead worker's claim is visible"
    assert (rows[first].access_token, rows[first].refresh_token) == crash.seeded[first]
    crash.fake.latency = 0.0
    crash.wait_for_leases()
    status, output = crash.run()
    assert status == (1 if rotate else 0), output
    rows = crash.check_recovered(reauth_allowed={first} if rotate else set())
    assert (rows[first].status == "needs_reauth") is rotate
    assert crash.fake.refresh_calls(crash.seeded[first][1]) == 2


@pytest.mark.parametrize("rotate", [False, True], ids=["same-refresh-token", "rotated"])
def test_killed_after_hubspot_answered(scenario: Callable[..., Scenario], rotate: bool) -> None:
    crash = scenario(rotate=rotate)
    child = crash.spawn()
    assert crash.server.answered.wait(30), "the child never got an answer"
    _kill(child)
    crash.check_nothing_lost()
    crash.wait_for_leases()
    status, output = crash.run()
    rows = crash.check_recovered(reauth_allowed={PORTALS[0]} if rotate else set())
    needs_reauth = [portal for portal, row in rows.items() if row.status == "needs_reauth"]
    assert status == (1 if needs_reauth else 0), output


@pytest.mark.parametrize("seed", [1, 2])
def test_killed_at_a_random_moment(scenario: Callable[..., Scenario], seed: int) -> None:
    rng = random.Random(seed)
    rotate = bool(seed % 2)
    crash = scenario(rotate=rotate, latency=0.3)
    child = crash.spawn()
    time.sleep(rng.uniform(0.3, 2.5))
    if child.poll() is None:
        _kill(child)
    crash.check_nothing_lost()
    crash.fake.latency = 0.0
    crash.wait_for_leases()
    status, output = crash.run()
    # Any row HubSpot saw a refresh for may have lost its answer, if HubSpot rotates.
    seen = {portal for portal in PORTALS if crash.fake.refresh_calls(crash.seeded[portal][1])}
    crash.check_recovered(reauth_allowed=seen if rotate else set())
    assert status in (0, 1), output
