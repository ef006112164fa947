"""One benchmark step in a fresh process; ``benchmarks/run.py`` starts it and reads its JSON.

``python -m benchmarks.worker setup --n N``: migrate, then seed N due connections whose
tokens the fake server issued (``bulk_create``).
``python -m benchmarks.worker refresh --concurrency C``: mark every row due, then measure
one ``refresh_expiring_tokens`` run (wall, CPU, queries, HTTP requests, peak RSS).
``python -m benchmarks.worker read``: ``get_access_token`` on a fresh token against a
plain ``HubSpotConnection.objects.get(pk=...)``.

The last line on stdout is the step's result as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
import urllib.request
from collections import Counter
from datetime import timedelta
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.db.backends.base.base import BaseDatabaseWrapper  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402
from django.utils import timezone  # noqa: E402

from hubspot_connect.batch import refresh_expiring_tokens  # noqa: E402
from hubspot_connect.models import ACTIVE, HubSpotConnection  # noqa: E402
from hubspot_connect.tokens import get_access_token  # noqa: E402

SEED_BATCH = 1000
DUE_IN = timedelta(seconds=60)  # "expires soon": well inside the default 900 s window


def _server(path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    url = settings.HUBSPOT_API_BASE_URL + path
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


class QueryCounter:
    """Counts the SQL statements of every thread's database connection."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_kind: Counter[str] = Counter()

    def __call__(
        self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        kind = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
        with self.lock:
            self.by_kind[kind] += 1
        return execute(sql, params, many, context)

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def attach(self, sender: Any = None, *, connection: BaseDatabaseWrapper, **_: Any) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)

    def install(self) -> None:
        # Worker threads open their own connections: attach to each as it connects.
        connection_created.connect(self.attach, weak=False)
        for wrapper in connections.all():
            self.attach(connection=wrapper)


def _rusage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def setup(n: int) -> dict[str, Any]:
    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    HubSpotConnection.objects.all().delete()
    expires_at = timezone.now() + DUE_IN
    for start in range(1, n + 1, SEED_BATCH):
        portals = list(range(start, min(n, start + SEED_BATCH - 1) + 1))
        tokens = _server("/_bench/seed", {"portals": portals, "expires_in": 60})["tokens"]
        HubSpotConnection.objects.bulk_create(
            HubSpotConnection(
                portal_id=portal,
                hub_domain=f"portal-{portal}.hubspot.com",
                hublet="na1",
                scopes=issued["scopes"],
                access_token=issued["access_token"],
                refresh_token=issued["refresh_token"],
                expires_at=expires_at,
                status=ACTIVE,
            )
            for portal, issued in zip(portals, tokens, strict=True)
        )
    return {"seeded": HubSpotConnection.objects.count(), "seconds": time.perf_counter() - started}


def refresh(concurrency: int, chunk_size: int | None) -> dict[str, Any]:
    # One UPDATE, no rows loaded: every connection is due again.
    HubSpotConnection.objects.update(
        expires_at=timezone.now() + DUE_IN, lease_expires_at=None, status=ACTIVE
    )
    connection.close()  # the run opens its own connection, as a fresh cron process would
    _server("/_bench/reset-stats", {})
    counter = QueryCounter()
    counter.install()
    rss_before = _rss_kib()
    user0, sys0 = _rusage()
    started = time.perf_counter()
    options: dict[str, Any] = {"concurrency": concurrency}
    if chunk_size is not None:
        options["chunk_size"] = chunk_size
    summary = refresh_expiring_tokens(**options)
    wall = time.perf_counter() - started
    user1, sys1 = _rusage()
    queries = dict(counter.by_kind)
    stats = _server("/_bench/stats")
    return {
        "concurrency": concurrency,
        "selected": summary.selected,
        "refreshed": summary.refreshed,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "needs_reauth": summary.needs_reauth,
        "wall_s": wall,
        "cpu_user_s": user1 - user0,
        "cpu_sys_s": sys1 - sys0,
        "queries": sum(queries.values()),
        "queries_by_kind": queries,
        "http_requests": stats["total_requests"],
        "http_requests_by_path": stats["requests"],
        "tcp_connections": stats["tcp_connections"],
        "rss_before_kib": rss_before,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _per_call(function: Any, iterations: int, rounds: int) -> float:
    """Best of ``rounds`` of ``iterations`` calls, in seconds per call (as timeit does)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(iterations):
            function()
        best = min(best, (time.perf_counter() - started) / iterations)
    return best


def read(iterations: int, rounds: int) -> dict[str, Any]:
    row = HubSpotConnection.objects.order_by("pk").first()
    assert row is not None, "seed the database first"
    HubSpotConnection.objects.filter(pk=row.pk).update(
        expires_at=timezone.now() + timedelta(hours=1), lease_expires_at=None, status=ACTIVE
    )
    pk, portal_id = row.pk, row.portal_id
    token = get_access_token(portal_id)  # warm: connection open, queries compiled once
    assert token == HubSpotConnection.objects.get(pk=pk).access_token
    counter = QueryCounter()
    counter.install()
    get_access_token(portal_id)
    queries = counter.total
    connection.execute_wrappers.remove(counter)

    def plain() -> None:
        HubSpotConnection.objects.get(pk=pk)

    def token_read() -> None:
        get_access_token(portal_id)

    plain_s = token_s = float("inf")
    for _ in range(3):  # interleaved, so drift on a busy machine hits both alike
        plain_s = min(plain_s, _per_call(plain, iterations, rounds))
        token_s = min(token_s, _per_call(token_read, iterations, rounds))
    return {
        "iterations": iterations * rounds * 3,
        "get_access_token_us": token_s * 1e6,
        "objects_get_us": plain_s * 1e6,
        "ratio": token_s / plain_s,
        "get_access_token_queries": queries,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    steps = parser.add_subparsers(dest="step", required=True)
    setup_parser = steps.add_parser("setup")
    setup_parser.add_argument("--n", type=int, required=True)
    refresh_parser = steps.add_parser("refresh")
    refresh_parser.add_argument("--concurrency", type=int, required=True)
    refresh_parser.add_argument("--chunk-size", type=int, default=None)
    read_parser = steps.add_parser("read")
    read_parser.add_argument("--iterations", type=int, default=500)
    read_parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.step == "setup":
        result = setup(args.n)
    elif args.step == "refresh":
        result = refresh(args.concurrency, args.chunk_size)
    else:
        result = read(args.iterations, args.rounds)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
