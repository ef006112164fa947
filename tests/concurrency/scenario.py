"""Steps the multi-process tests run in child processes.

    python -m tests.concurrency.scenario seed ROWS.json   # replace all connections
    python -m tests.concurrency.scenario state            # print every row as JSON
    python -m tests.concurrency.scenario tokens N PORTAL  # get_access_token from N threads

Run with ``DJANGO_SETTINGS_MODULE=tests.concurrency.settings``. Output is test data
(tokens from FakeHubSpot), printed for the parent test to check.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import timedelta
from pathlib import Path

import django


def seed(path: str) -> None:
    from django.utils import timezone

    from hubspot_connect.models import HubSpotConnection

    rows = json.loads(Path(path).read_text())
    now = timezone.now()
    HubSpotConnection.objects.all().delete()
    HubSpotConnection.objects.bulk_create(
        HubSpotConnection(
            portal_id=row["portal_id"],
            scopes=["oauth"],
            access_token=row["access_token"],
            refresh_token=row["refresh_token"],
            expires_at=now + timedelta(seconds=row["expires_in"]),
        )
        for row in rows
    )


def state() -> None:
    from hubspot_connect.models import HubSpotConnection

    fields = (
        "portal_id",
        "access_token",
        "refresh_token",
        "status",
        "refresh_failures",
        "last_error",
        "lease_expires_at",
        "last_refreshed_at",
    )
    rows = [
        {name: getattr(row, name) for name in fields}
        for row in HubSpotConnection.objects.order_by("portal_id")
    ]
    print(json.dumps(rows, default=str))


def tokens(count: int, portal_id: int) -> None:
    from django.db import connection

    from hubspot_connect.tokens import get_access_token

    barrier = threading.Barrier(count)
    results: list[str | None] = [None] * count
    errors: list[str] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            results[index] = get_access_token(portal_id)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"tokens": results, "errors": errors}))


def main(argv: list[str]) -> None:
    django.setup()
    if argv[0] == "seed":
        seed(argv[1])
    elif argv[0] == "state":
        state()
    elif argv[0] == "tokens":
        tokens(int(argv[1]), int(argv[2]))
    else:
        raise SystemExit(f"unknown step {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
