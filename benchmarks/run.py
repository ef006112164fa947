"""Refresh benchmarks: throughput against HubSpot's latency, cost per connection, memory.

``make bench`` runs ``python benchmarks/run.py``. For each database it starts FakeHubSpot
as a real HTTP server in its own process (see ``benchmarks/fake_server.py``), seeds N
connections whose tokens expire soon, and runs the real ``refresh_expiring_tokens`` in a
fresh process per measurement (``benchmarks/worker.py``), so CPU time and peak RSS are
that run's alone. Results: a table on stdout and a JSON file under benchmarks/results/.

SQLite (a file database) by default; PostgreSQL when DATABASE_URL is set or with
``--database postgres://...`` (repeatable; ``sqlite`` names the SQLite file database).
On PostgreSQL the benchmark creates, uses and drops its own database (``--pg-name``,
default ``hubspot_bench``) on that server and never touches the one in the URL.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Target:
    name: str
    value: float | None
    limit: float
    higher_is_better: bool

    @property
    def met(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def as_dict(self) -> dict[str, Any]:
        sign = ">=" if self.higher_is_better else "<="
        return {"target": self.name, "value": self.value, "limit": f"{sign} {self.limit:g}"}


# -- processes ----------------------------------------------------------------------------


SQLITE_PRAGMAS = "journal_mode=WAL;synchronous=NORMAL"


def _env(database_url: str, api_base_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("BENCH_SQLITE_PRAGMAS", SQLITE_PRAGMAS)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    env["BENCH_DATABASE_URL"] = database_url
    env["BENCH_API_BASE_URL"] = api_base_url
    return env


@contextlib.contextmanager
def fake_server(latency: float) -> Iterator[str]:
    """A FakeHubSpot HTTP server process; yields its base URL."""
    env = _env("", "")
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fake_server", "--latency", str(latency)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the fake HubSpot server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def step(database_url: str, api_base_url: str, *args: str) -> dict[str, Any]:
    """Run one worker step in a fresh process and return its JSON result."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", *args],
        cwd=ROOT,
        env=_env(database_url, api_base_url),
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


# -- databases ----------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database(spec: str, pg_name: str) -> Iterator[tuple[str, str]]:
    """Yields (label, database URL) of a fresh, empty database for ``spec``."""
    if spec == "sqlite":
        directory = tempfile.mkdtemp(prefix="hubspot-bench-")
        try:
            yield "sqlite", f"sqlite:///{directory}/bench.sqlite3"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    parts = urlsplit(spec)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"--database: use 'sqlite' or a postgres:// URL, not {spec!r}")
    import psycopg
    from psycopg import sql

    admin_url = urlunsplit(("postgresql", *parts[1:]))
    drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(pg_name))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg_name)))
    try:
        yield "postgresql", urlunsplit((parts.scheme, parts.netloc, "/" + pg_name, "", ""))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(drop)


# -- measurements -------------------------------------------------------------------------


def refresh_row(
    db: str, kind: str, n: int, latency: float, result: dict[str, Any]
) -> dict[str, Any]:
    concurrency = result["concurrency"]
    refreshed = max(1, result["refreshed"])
    cpu = result["cpu_user_s"] + result["cpu_sys_s"]
    token_requests = result["http_requests_by_path"].get("/oauth/2026-03/token", 0)
    return {
        "database": db,
        "benchmark": kind,
        "n": n,
        "latency_ms": latency * 1000,
        "concurrency": concurrency,
        "refreshed": result["refreshed"],
        "failed": result["failed"] + result["needs_reauth"],
        "wall_s": result["wall_s"],
        "refreshes_per_s": result["refreshed"] / result["wall_s"],
        "efficiency": (n * latency / concurrency) / result["wall_s"],
        "cpu_ms_per_connection": cpu * 1000 / refreshed,
        "cpu_user_s": result["cpu_user_s"],
        "cpu_sys_s": result["cpu_sys_s"],
        "queries": result["queries"],
        "queries_per_connection": result["queries"] / refreshed,
        "queries_by_kind": result["queries_by_kind"],
        "http_requests": result["http_requests"],
        "http_requests_per_connection": token_requests / refreshed,
        "tcp_connections": result["tcp_connections"],
        "peak_rss_mib": result["peak_rss_kib"] / 1024,
        "rss_before_run_mib": result["rss_before_kib"] / 1024,
    }


def bench_database_run(label: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    out: dict[str, Any] = {"database": label, "rows": rows}
    with fake_server(args.latency) as api:
        log(f"[{label}] seeding {args.n} connections")
        step(url, api, "setup", "--n", str(args.n))
        for concurrency in args.concurrency:
            log(f"[{label}] refresh N={args.n} latency={args.latency * 1000:g} ms c={concurrency}")
            result = step(url, api, "refresh", "--concurrency", str(concurrency))
            rows.append(refresh_row(label, "throughput", args.n, args.latency, result))
        log(f"[{label}] get_access_token vs objects.get")
        out["read"] = step(url, api, "read", "--iterations", str(args.read_iterations))
    if args.memory_n:
        with fake_server(args.memory_latency) as api:
            for n in (args.memory_base_n, args.memory_n):
                log(f"[{label}] memory: N={n} latency={args.memory_latency * 1000:g} ms")
                step(url, api, "setup", "--n", str(n))
                result = step(url, api, "refresh", "--concurrency", str(args.memory_concurrency))
                rows.append(refresh_row(label, "memory", n, args.memory_latency, result))
    return out


def targets(run: dict[str, Any], args: argparse.Namespace) -> list[Target]:
    db = run["database"]
    throughput = {
        row["concurrency"]: row for row in run["rows"] if row["benchmark"] == "throughput"
    }
    memory = {row["n"]: row for row in run["rows"] if row["benchmark"] == "memory"}
    found: list[Target] = []
    at16 = throughput.get(16)
    if at16 is not None:
        floor = 0.80 if db == "postgresql" else 0.60
        found.append(
            Target(f"{db}: efficiency at concurrency 16", at16["efficiency"], floor, True)
        )
        if 1 in throughput:
            speedup = throughput[1]["wall_s"] / at16["wall_s"]
            found.append(Target(f"{db}: speed-up c16 / c1", speedup, 12, True))
        found.append(
            Target(f"{db}: CPU ms per refresh (c16)", at16["cpu_ms_per_connection"], 3, False)
        )
    for concurrency, row in sorted(throughput.items()):
        found.append(
            Target(
                f"{db}: queries per refresh (c{concurrency})",
                row["queries_per_connection"],
                3,
                False,
            )
        )
    requests_ok = all(
        row["http_requests"] == row["refreshed"] == row["n"]
        and row["tcp_connections"] <= min(row["concurrency"], row["n"])
        for row in run["rows"]
    )
    found.append(
        Target(
            f"{db}: 1 HTTP request per refresh, 1 TCP connection per thread",
            float(requests_ok),
            1,
            True,
        )
    )
    read = run.get("read")
    if read:
        found.append(
            Target(f"{db}: get_access_token queries", read["get_access_token_queries"], 1, False)
        )
        found.append(Target(f"{db}: get_access_token / objects.get", read["ratio"], 1.5, False))
    if args.memory_n and len(memory) == 2:
        ratio = memory[args.memory_n]["peak_rss_mib"] / memory[args.memory_base_n]["peak_rss_mib"]
        found.append(
            Target(f"{db}: peak RSS N={args.memory_n} / N={args.memory_base_n}", ratio, 1.5, False)
        )
    return found


# -- output -----------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


COLUMNS = [
    ("database", "db", "{}"),
    ("benchmark", "bench", "{}"),
    ("n", "N", "{}"),
    ("latency_ms", "lat ms", "{:g}"),
    ("concurrency", "conc", "{}"),
    ("wall_s", "wall s", "{:.2f}"),
    ("refreshes_per_s", "refr/s", "{:.0f}"),
    ("efficiency", "eff", "{:.2f}"),
    ("cpu_ms_per_connection", "CPU ms/conn", "{:.2f}"),
    ("queries_per_connection", "queries/conn", "{:.3f}"),
    ("http_requests_per_connection", "HTTP/conn", "{:.2f}"),
    ("tcp_connections", "TCP conns", "{}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.1f}"),
]


def table(rows: list[dict[str, Any]]) -> str:
    cells = [[title for _, title, _ in COLUMNS]]
    cells += [[form.format(row[key]) for key, _, form in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": load,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=1000, help="connections (default 1000)")
    parser.add_argument(
        "--latency", type=float, default=0.050, help="seconds per HubSpot request (0.050)"
    )
    parser.add_argument(
        "--concurrency",
        default="1,4,16,32",
        help="comma-separated thread counts to measure (default 1,4,16,32)",
    )
    parser.add_argument(
        "--database",
        action="append",
        metavar="sqlite|URL",
        help="'sqlite' (a file database) or a postgres:// URL; repeatable. "
        "Default: DATABASE_URL if set, else sqlite.",
    )
    parser.add_argument(
        "--sqlite-pragmas",
        default=SQLITE_PRAGMAS,
        help=f"PRAGMAs for SQLite connections (default {SQLITE_PRAGMAS!r}; '' for SQLite's "
        "defaults, whose fsync per commit then bounds the run)",
    )
    parser.add_argument("--pg-name", default="hubspot_bench", help="scratch PostgreSQL database")
    parser.add_argument("--memory-n", type=int, default=10_000, help="0 skips the memory run")
    parser.add_argument("--memory-base-n", type=int, default=1000)
    parser.add_argument("--memory-latency", type=float, default=0.005)
    parser.add_argument("--memory-concurrency", type=int, default=16)
    parser.add_argument("--read-iterations", type=int, default=500)
    parser.add_argument("--output", type=Path, help="JSON path (default benchmarks/results/…)")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: N=100, c=1,16, small memory run"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.concurrency = 100, "1,16"
        args.memory_n, args.memory_base_n = 1000, 100
        args.read_iterations = 100
    args.concurrency = [int(value) for value in str(args.concurrency).split(",") if value]
    if not args.database:
        args.database = [os.environ.get("DATABASE_URL") or "sqlite"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["BENCH_SQLITE_PRAGMAS"] = args.sqlite_pragmas
    started = datetime.datetime.now(datetime.timezone.utc)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
            if key not in ("database",)
        },
        "runs": [],
        "targets": [],
    }
    for spec in args.database:
        with bench_database(spec, args.pg_name) as (label, url):
            run = bench_database_run(label, url, args)
        report["runs"].append(run)
        report["targets"] += [
            target.as_dict() | {"met": target.met} for target in targets(run, args)
        ]
    rows = [row for run in report["runs"] for row in run["rows"]]
    print(table(rows))
    print()
    for run in report["runs"]:
        read = run["read"]
        print(
            f"{run['database']}: get_access_token {read['get_access_token_us']:.0f} us "
            f"vs objects.get {read['objects_get_us']:.0f} us "
            f"(ratio {read['ratio']:.2f}, {read['get_access_token_queries']} query)"
        )
    print()
    for target in report["targets"]:
        value = target["value"]
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        verdict = "met   " if target["met"] else "MISSED"
        print(f"{verdict}  {target['target']}: {shown} ({target['limit']})")
    output = args.output or RESULTS / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nJSON: {output}")
    if args.check and not all(target["met"] for target in report["targets"]):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
