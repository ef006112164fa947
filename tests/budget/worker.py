"""What the child processes of the multi-process API tests do.

    python -m tests.budget.worker hammer PORTAL TOKEN THREADS SECONDS START
        THREADS threads call GET /crm/objects/2026-03/contacts through api_session() on
        an unsaved connection holding TOKEN, from wall-clock time START for SECONDS;
        prints {"statuses": {...}, "errors": [...]}.
    python -m tests.budget.worker seed PORTAL ACCESS_TOKEN REFRESH_TOKEN
        stores a connection whose token is fresh for 30 minutes.
    python -m tests.budget.worker burst401 PORTAL THREADS START
        THREADS threads each load the stored connection, wait for START, and call GET
        /account-info/2026-03/details once; prints the statuses.

Run with ``DJANGO_SETTINGS_MODULE=tests.budget.settings``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import django


def _threads(count: int, target: Any) -> None:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def hammer(portal_id: int, token: str, threads: int, seconds: float, start: float) -> None:
    from django.utils import timezone

    from hubspot_connect.models import HubSpotConnection
    from hubspot_connect.session import HubSpotSession

    statuses: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        connection = HubSpotConnection(
            portal_id=portal_id,
            access_token=token,
            expires_at=timezone.now() + timedelta(hours=1),
        )
        session = HubSpotSession(connection, max_wait=60)
        time.sleep(max(0.0, start - time.time()))
        while time.time() < start + seconds:
            try:
                status = str(session.get("/crm/objects/2026-03/contacts").status_code)
            except Exception as exc:  # reported to the parent test
                status = type(exc).__name__
                with lock:
                    errors.append(str(exc))
            with lock:
                statuses[status] += 1

    _threads(threads, run)
    print(json.dumps({"statuses": statuses, "errors": errors[:5]}))


def seed(portal_id: int, access_token: str, refresh_token: str) -> None:
    from django.utils import timezone

    from hubspot_connect.models import HubSpotConnection

    HubSpotConnection.objects.create(
        portal_id=portal_id,
        scopes=["oauth"],
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=timezone.now() + timedelta(minutes=30),
    )


def burst401(portal_id: int, threads: int, start: float) -> None:
    from django.db import connection as db

    from hubspot_connect.session import api_session

    statuses: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            session = api_session(portal_id)
            time.sleep(max(0.0, start - time.time()))
            try:
                status = str(session.get("/account-info/2026-03/details").status_code)
            except Exception as exc:  # reported to the parent test
                status = f"{type(exc).__name__}: {exc}"
            with lock:
                statuses.append(status)
        finally:
            db.close()

    _threads(threads, run)
    print(json.dumps({"statuses": statuses}))


def main(argv: list[str]) -> None:
    django.setup()
    if argv[0] == "hammer":
        hammer(int(argv[1]), argv[2], int(argv[3]), float(argv[4]), float(argv[5]))
    elif argv[0] == "seed":
        seed(int(argv[1]), argv[2], argv[3])
    elif argv[0] == "burst401":
        burst401(int(argv[1]), int(argv[2]), float(argv[3]))
    else:
        raise SystemExit(f"unknown step {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
