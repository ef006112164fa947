from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hubspot_connect.models import HubSpotConnection
from hubspot_connect.tokens import FAILED, REAUTH, refresh_expiring_tokens


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Refresh the HubSpot access tokens that expire soon (run it from cron)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--within",
            type=int,
            default=900,
            metavar="SECONDS",
            help="Refresh tokens that expire within this many seconds (default 900).",
        )
        parser.add_argument(
            "--portal",
            type=int,
            action="append",
            dest="portals",
            metavar="ID",
            help="Only this portal id (repeatable).",
        )
        parser.add_argument(
            "--force", action="store_true", help="Refresh even tokens that are not due."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be refreshed; change nothing."
        )
        parser.add_argument(
            "--concurrency",
            type=_positive,
            default=4,
            metavar="N",
            help="Refresh N connections at once, each thread with its own database "
            "connection (default 4).",
        )
        parser.add_argument(
            "--retries",
            type=int,
            default=3,
            metavar="N",
            help="Retries per connection when HubSpot is unavailable (default 3).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["within"] < 0:
            raise CommandError("--within must be zero or more seconds.")
        verbosity = options["verbosity"]
        lock = threading.Lock()
        every = 100

        def progress(item: HubSpotConnection | int, outcome: str, error: Any) -> None:
            portal = item.portal_id if isinstance(item, HubSpotConnection) else f"row {item}"
            with lock:
                progress.done += 1  # type: ignore[attr-defined]
                if verbosity >= 2 or outcome in (FAILED, REAUTH):
                    detail = f": {error}" if error is not None and outcome != "skipped" else ""
                    write = self.stderr.write if outcome == FAILED else self.stdout.write
                    write(f"portal {portal}: {outcome}{detail}")
                elif verbosity >= 1 and progress.done % every == 0:  # type: ignore[attr-defined]
                    self.stdout.write(f"... {progress.done} connections processed")  # type: ignore[attr-defined]

        progress.done = 0  # type: ignore[attr-defined]
        summary = refresh_expiring_tokens(
            within=timedelta(seconds=options["within"]),
            portals=options["portals"],
            force=options["force"],
            dry_run=options["dry_run"],
            concurrency=options["concurrency"],
            retries=max(0, options["retries"]),
            progress=progress if (verbosity >= 1 or options["dry_run"]) else None,
        )
        if verbosity >= 1 or not summary.ok:
            self.stdout.write(str(summary))
        if not summary.ok:
            raise SystemExit(1)
