"""API-call benchmarks: what the session adds per call, and the shared budget under load.

``python benchmarks/api_calls.py`` measures, against FakeHubSpot over real HTTP:

1. **CPU per call.** ``HubSpotSession.get()`` (Bearer, the shared budget, retry
   bookkeeping) divided by a bare ``requests.Session`` making the same call with the same
   token, both in this process, the fake in its own (``benchmarks/fake_server.py``), so
   only the client's CPU is counted. Once with the budget in a local-memory cache, once
   in Redis (``--redis``, default ``redis://127.0.0.1:6379/0``; skipped if none answers).
   The calls go round-robin over ``--portals`` portals with HubSpot's default budget
   (110 per 10 s each), so no call waits: the ratio is the budget's and the session's
   cost, not sleeping. Targets: <= 1.3 (local memory), <= 1.6 (Redis).
2. **One portal hammered.** ``--processes`` processes x ``--threads`` threads call one
   portal for ``--seconds`` through the session, sharing the budget in Redis; the fake,
   enforcing HubSpot's limit, records when every request arrives. Targets: at most 110
   requests in any 10 s window, no 429, throughput >= 90 % of 110 per 10 s.

Ratios within one run, never absolute times: the machine's speed cancels out. Results: a
table on stdout and JSON under benchmarks/results/. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CLIENT_ID, CLIENT_SECRET = "bench-client-id", "bench-client-secret"
CONTACTS = "/crm/objects/2026-03/contacts"
HAMMERED = 424242


def setup_django(
    redis_url: str, api_base_url: str = "http://127.0.0.1:9", prefix: str | None = None
) -> None:
    """Settings for this process; processes that share a budget share ``prefix``."""
    import django
    from django.conf import settings

    sys.path.insert(0, str(ROOT))
    settings.configure(
        SECRET_KEY="benchmarks-only",
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "encrypted_model_fields",
            "hubspot_connect",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
                "KEY_PREFIX": prefix or f"hubspot-bench-{uuid.uuid4().hex[:8]}",
            },
        },
        FIELD_ENCRYPTION_KEY="Hq4vVtI1WmQ0WvW8u5Jk2R9dNnS3wYQm9oQ0ZlZs7dE=",
        HUBSPOT_CLIENT_ID=CLIENT_ID,
        HUBSPOT_CLIENT_SECRET=CLIENT_SECRET,
        HUBSPOT_SCOPES=["oauth", "crm.objects.contacts.read"],
        HUBSPOT_REDIRECT_URI="http://127.0.0.1/hubspot/callback/",
        HUBSPOT_API_BASE_URL=api_base_url,
        LOGGING_CONFIG=None,
    )
    django.setup()


def connection_for(portal_id: int, token: str) -> Any:
    """An unsaved connection holding a fresh token: the session needs no database."""
    from datetime import timedelta

    from django.utils import timezone

    from hubspot_connect.models import HubSpotConnection

    return HubSpotConnection(
        portal_id=portal_id, access_token=token, expires_at=timezone.now() + timedelta(hours=1)
    )


def redis_answers(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


# -- 1. CPU per call ---------------------------------------------------------------------------


def cpu_per_call(sessions: list[Any], rounds: int) -> float:
    """Microseconds of this process's CPU per GET, going round-robin over ``sessions``."""
    started = time.process_time()
    for _ in range(rounds):
        for session in sessions:
            response = session.get(session.hubspot_url)
            if response.status_code != 200:
                raise RuntimeError(f"GET answered {response.status_code}: {response.text[:200]}")
    return (time.process_time() - started) / (rounds * len(sessions)) * 1e6


def measure_cpu(args: argparse.Namespace, caches: list[str]) -> list[dict[str, Any]]:
    import requests
    from django.conf import settings

    from hubspot_connect.session import HubSpotSession

    rows = []
    sys.path.insert(0, str(ROOT))
    from benchmarks.run import fake_server  # the same fake HubSpot process as make bench

    with fake_server(latency=0.0) as url:
        settings.HUBSPOT_API_BASE_URL = url
        portals = list(range(1_000_001, 1_000_001 + args.portals))
        seeded = requests.post(
            f"{url}/_bench/seed", json={"portals": portals, "expires_in": 7200}, timeout=30
        ).json()["tokens"]
        tokens = [token["access_token"] for token in seeded]
        bare = []
        for token in tokens:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {token}"
            session.hubspot_url = url + CONTACTS  # type: ignore[attr-defined]
            bare.append(session)
        for alias in caches:
            settings.HUBSPOT_RATE_LIMIT_CACHE = alias
            ours = []
            for portal, token in zip(portals, tokens, strict=True):
                session = HubSpotSession(connection_for(portal, token))
                session.hubspot_url = CONTACTS  # type: ignore[attr-defined]
                ours.append(session)
            cpu_per_call(bare, 1)  # warm up: connections open, code paths loaded
            cpu_per_call(ours, 1)
            bare_us, ours_us = [], []
            for _ in range(args.repeats):  # interleaved, so drift hits both alike
                bare_us.append(cpu_per_call(bare, args.rounds))
                ours_us.append(cpu_per_call(ours, args.rounds))
            bare_cpu, our_cpu = min(bare_us), min(ours_us)
            rows.append(
                {
                    "cache": "local memory" if alias == "default" else "redis",
                    "calls": args.repeats * args.rounds * len(portals),
                    "bare_us_per_call": round(bare_cpu, 1),
                    "session_us_per_call": round(our_cpu, 1),
                    "ratio": round(our_cpu / bare_cpu, 3),
                    "limit": 1.3 if alias == "default" else 1.6,
                }
            )
            for session in ours:
                session.close()
            time.sleep(10.5)  # the next cache starts with the portals' budgets unused
        for session in bare:
            session.close()
    return rows


# -- 2. one portal, several processes x threads -------------------------------------------------


def hammer_worker(argv: list[str]) -> None:
    """In a child process: THREADS threads call one portal until END (wall clock)."""
    url, redis_url, prefix, token, threads, start, end = argv
    setup_django(redis_url, url, prefix)
    from django.conf import settings

    from hubspot_connect.session import HubSpotSession

    settings.HUBSPOT_RATE_LIMIT_CACHE = "redis"
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def run() -> None:
        session = HubSpotSession(connection_for(HAMMERED, token), max_wait=120)
        time.sleep(max(0.0, float(start) - time.time()))
        while time.time() < float(end):
            try:
                status = str(session.get(CONTACTS).status_code)
            except Exception as exc:
                status = type(exc).__name__
            with lock:
                statuses[status] += 1

    workers = [threading.Thread(target=run) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps(statuses))


def measure_hammer(args: argparse.Namespace) -> dict[str, Any]:
    from hubspot_connect.testing import FakeHubSpot, FakeHubSpotServer

    fake = FakeHubSpot(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    fake.requests = _Discard()
    with FakeHubSpotServer(fake) as server:
        server.answers = _Discard()
        token = fake.issue_tokens(HAMMERED, ["oauth", "crm.objects.contacts.read"])
        start = time.time() + 4  # every child has started Django by then
        end = start + args.seconds
        command = [sys.executable, str(Path(__file__).resolve()), "_hammer", server.url]
        prefix = f"hubspot-bench-{uuid.uuid4().hex[:8]}"  # one budget for every child
        command += [args.redis, prefix, token["access_token"], str(args.threads)]
        command += [str(start), str(end)]
        children = [
            subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for _ in range(args.processes)
        ]
        statuses: Counter[str] = Counter()
        for child in children:
            out, _ = child.communicate(timeout=args.seconds + 180)
            statuses.update(json.loads(out.strip().splitlines()[-1]))
    arrivals = fake.limits.arrivals.get((HAMMERED, "api"), [])
    steady = [t for t in arrivals if start + 10 <= t < end]  # after the first burst
    per_window = len(steady) / (end - start - 10) * 10
    return {
        "processes": args.processes,
        "threads": args.threads,
        "seconds": args.seconds,
        "requests": len(arrivals),
        "statuses": dict(statuses),
        "max_in_any_10s_window": fake.limits.max_in_window(HAMMERED, 10.0),
        "answered_429": fake.limits.refused(HAMMERED),
        "requests_per_10s_steady": round(per_window, 1),
        "share_of_budget": round(per_window / 110, 3),
    }


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: Any) -> None:
        pass


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_hammer"]:
        hammer_worker(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--portals", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="calls per portal per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--skip-hammer", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)

    setup_django(args.redis)
    redis_ok = redis_answers(args.redis)
    caches = ["default", "redis"] if redis_ok else ["default"]
    cpu = measure_cpu(args, caches)
    hammer = measure_hammer(args) if redis_ok and not args.skip_hammer else None

    targets = [
        {
            "target": f"CPU ratio, {row['cache']}",
            "value": row["ratio"],
            "limit": row["limit"],
            "met": row["ratio"] <= row["limit"],
        }
        for row in cpu
    ]
    if hammer is not None:
        targets += [
            {
                "target": "max requests in any 10 s window",
                "value": hammer["max_in_any_10s_window"],
                "limit": 110,
                "met": hammer["max_in_any_10s_window"] <= 110,
            },
            {
                "target": "429 answers",
                "value": hammer["answered_429"],
                "limit": 0,
                "met": hammer["answered_429"] == 0,
            },
            {
                "target": "throughput / budget",
                "value": hammer["share_of_budget"],
                "limit": 0.9,
                "met": hammer["share_of_budget"] >= 0.9,
            },
        ]
    print(f"{'cache':<14}{'bare us/call':>14}{'session us/call':>17}{'ratio':>8}")
    for row in cpu:
        print(
            f"{row['cache']:<14}{row['bare_us_per_call']:>14}{row['session_us_per_call']:>17}"
            f"{row['ratio']:>8}"
        )
    if hammer is not None:
        print(json.dumps(hammer, indent=2))
    elif not redis_ok:
        print(f"no Redis at {args.redis}: Redis measurements skipped")
    for target in targets:
        print(
            f"{'met ' if target['met'] else 'MISS'} {target['target']}: {target['value']} "
            f"(limit {target['limit']})"
        )
    started = datetime.datetime.now(datetime.timezone.utc)
    output = args.output or RESULTS / f"api-calls-{started:%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {"cpu": cpu, "hammer": hammer, "targets": targets}
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {output}")
    return 0 if all(target["met"] for target in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
