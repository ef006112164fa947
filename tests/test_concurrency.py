"""No double refresh across processes, on a file SQLite database, PostgreSQL and MariaDB.

Child processes run ``manage.py refresh_hubspot_tokens`` (as ``python -m django``) and the
steps of ``tests/concurrency/scenario.py`` against one shared database. They all talk
to one FakeHubSpot served over real HTTP from this process, which counts every refresh
of every refresh token. The PostgreSQL variant creates a fresh database on
postgres://postgres@127.0.0.1:5432 (or DATABASE_URL's server) and drops it afterwards;
it is skipped when no PostgreSQL server answers; the MariaDB (or MySQL) variant does the
same on mysql://root@127.0.0.1:3306 (or MARIADB_URL's server).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from hubspot_connect.testing import FakeHubSpot, FakeHubSpotServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = "tests.concurrency.settings"
PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/postgres"
MARIADB_DEFAULT = "mysql://root@127.0.0.1:3306/mysql"


# -- FakeHubSpot over real HTTP ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[FakeHubSpot, str]]:
    with FakeHubSpotServer() as server:
        yield server.fake, server.url


# -- one shared database per backend ------------------------------------------------------------


def _postgres_server() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    url = url if url.startswith(("postgres://", "postgresql://")) else PG_DEFAULT
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=2):
            return url
    except Exception:
        return None


def _mariadb_server() -> str | None:
    url = os.environ.get("MARIADB_URL") or MARIADB_DEFAULT
    try:
        import MySQLdb

        parts = urlsplit(url)
        MySQLdb.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            connect_timeout=2,
        ).close()
    except Exception:
        return None
    return url


@contextlib.contextmanager
def _mariadb_database(server: str) -> Iterator[str]:
    import MySQLdb

    parts = urlsplit(server)
    name = f"hubspot_concurrency_{uuid.uuid4().hex[:12]}"
    admin = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
    )
    try:
        admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("concurrency") / "db.sqlite3"
        url = f"sqlite:///{path}"
        _migrate(url)
        yield url
        return
    if request.param == "mariadb":
        mariadb = _mariadb_server()
        if mariadb is None:
            pytest.importorskip(
                "MySQLdb", reason="mysqlclient is not installed (make test-mariadb)"
            )
            pytest.skip("no MariaDB server on 127.0.0.1:3306 (or MARIADB_URL)")
        with _mariadb_database(mariadb) as url:
            _migrate(url)
            yield url
        return
    server = _postgres_server()
    if server is None:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 (or DATABASE_URL)")
    import psycopg

    name = f"hubspot_concurrency_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        _migrate(url)
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(database: str, api: str = "http://127.0.0.1:9", **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database,
        HUBSPOT_API_BASE_URL=api,
        DJANGO_SETTINGS_MODULE=SETTINGS,
        PYTHONPATH=str(ROOT),
        PYTHONWARNINGS="error::DeprecationWarning",
        **extra,
    )
    return env


def _migrate(database: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"],
        cwd=ROOT,
        env=_env(database),
        check=True,
        timeout=120,
    )


def _step(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "tests.concurrency.scenario", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", "refresh_hubspot_tokens", *args]


def _seed(
    env: dict[str, str], fake: FakeHubSpot, tmp_path: Path, expiries: list[int]
) -> list[dict[str, Any]]:
    rows = []
    for index, expires_in in enumerate(expiries):
        issued = fake.issue_tokens(1000 + index, ["oauth"])
        rows.append({**issued, "portal_id": 1000 + index, "expires_in": expires_in})
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(rows))
    _step(env, "seed", str(seed))
    return rows


def _summary(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("refreshed "))
    words = line.replace(",", "").replace(";", "").split()
    return {
        "refreshed": int(words[1]),
        "skipped": int(words[3]),
        "needs_reauth": int(words[8]),
        "failed": int(words[10]),
    }


@pytest.fixture
def fake(fake_server: tuple[FakeHubSpot, str]) -> Iterator[FakeHubSpot]:
    fake_server[0].reset()
    fake_server[0].latency = 0.0
    yield fake_server[0]
    fake_server[0].reset()
    fake_server[0].latency = 0.0


# -- the tests --------------------------------------------------------------------------


def test_four_processes_refresh_each_connection_exactly_once(
    database: str, fake: FakeHubSpot, fake_server: tuple[FakeHubSpot, str], tmp_path: Path
) -> None:
    env = _env(database, fake_server[1])
    rows = _seed(env, fake, tmp_path, [60 + (index * 3) % 800 for index in range(200)])
    seeded = {row["portal_id"]: row for row in rows}
    fake.latency = 0.002  # HubSpot answers in a few ms, so the processes overlap

    processes = [
        subprocess.Popen(
            _command(),
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]

    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, (out, err)
        assert "Traceback" not in err
        assert "failed" not in err
    summaries = [_summary(out) for out, _ in outputs]
    assert sum(summary["refreshed"] for summary in summaries) == 200, summaries
    assert sum(summary["failed"] + summary["needs_reauth"] for summary in summaries) == 0
    calls = fake.refresh_calls_by_token()
    assert len(calls) == 200
    assert set(calls.values()) == {1}, [token for token, n in calls.items() if n != 1]
    for row in _step(env, "state"):
        before = seeded[row["portal_id"]]
        assert calls[before["refresh_token"]] == 1
        assert row["access_token"] != before["access_token"]
        assert fake.is_issued_access_token(row["access_token"])
        assert row["lease_expires_at"] is None
        assert row["last_refreshed_at"] is not None
        assert row["status"] == "active"


def test_a_killed_workers_lease_is_taken_over_once_it_runs_out(
    database: str, fake: FakeHubSpot, fake_server: tuple[FakeHubSpot, str], tmp_path: Path
) -> None:
    lease = 3
    env = _env(database, fake_server[1], HUBSPOT_REFRESH_LEASE=str(lease))
    (before,) = _seed(env, fake, tmp_path, [60])
    fake.fail("status", status=503, delay=5)  # HubSpot hangs on the first refresh

    worker = subprocess.Popen(
        _command("--concurrency", "1"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not any(path.endswith("/token") for _, path, _ in fake.requests):
        assert time.monotonic() < deadline, "the worker never called HubSpot"
        assert worker.poll() is None
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)  # dies holding the lease, mid-request
    worker.wait(timeout=10)
    killed_at = time.monotonic()

    (row,) = _step(env, "state")
    assert row["lease_expires_at"] is not None
    assert row["access_token"] == before["access_token"]

    # Within the dead worker's lease the row is skipped; once it has run out, taken over.
    # (On a slow machine the lease may already have run out when this run claims.)
    early = subprocess.run(_command(), cwd=ROOT, env=env, capture_output=True, text=True)
    assert early.returncode == 0, early.stderr
    later = early
    if _summary(early.stdout)["refreshed"] == 0:
        assert _summary(early.stdout) == {
            "refreshed": 0,
            "skipped": 1,
            "needs_reauth": 0,
            "failed": 0,
        }
        assert fake.refresh_calls() == 0
        time.sleep(max(0.0, lease + 0.3 - (time.monotonic() - killed_at)))
        later = subprocess.run(_command(), cwd=ROOT, env=env, capture_output=True, text=True)
    assert later.returncode == 0, later.stderr
    assert _summary(later.stdout)["refreshed"] == 1
    assert fake.refresh_calls(before["refresh_token"]) == 1
    (row,) = _step(env, "state")
    assert row["lease_expires_at"] is None
    assert row["access_token"] != before["access_token"]
    assert row["refresh_failures"] == 0


def test_eight_threads_reading_one_expiring_token_refresh_it_once(
    database: str, fake: FakeHubSpot, fake_server: tuple[FakeHubSpot, str], tmp_path: Path
) -> None:
    env = _env(database, fake_server[1])
    (before,) = _seed(env, fake, tmp_path, [30])
    fake.latency = 0.3  # the refresh takes a while: the other seven must wait for it

    result = _step(env, "tokens", "8", str(before["portal_id"]))

    assert result["errors"] == []
    (row,) = _step(env, "state")
    assert result["tokens"] == [row["access_token"]] * 8
    assert row["access_token"] != before["access_token"]
    assert fake.refresh_calls() == 1
