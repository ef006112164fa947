from __future__ import annotations

import argparse
import logging
import threading
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from hubspot_connect.batch import (
    CREDENTIALS_HINT,
    FAILED,
    REAUTH,
    REJECTED,
    SKIPPED,
    WOULD_REFRESH,
    refresh_expiring_tokens,
)
from hubspot_connect.models import HubSpotConnection

logger = logging.getLogger("hubspot_connect")


def _count(minimum: int) -> Any:
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {number}")
        return number

    parse.__name__ = "integer"  # argparse names the type in its error message
    return parse


class _Progress:
    """Prints one line per connection at -v 2 (and for failures), else a count now and then."""

    def __init__(
        self, stdout: OutputWrapper, stderr: OutputWrapper, verbosity: int, every: int = 100
    ) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.verbosity, self.every = verbosity, every
        self.done = 0
        self._lock = threading.Lock()

    def __call__(
        self, item: HubSpotConnection | int, outcome: str, error: BaseException | None
    ) -> None:
        portal = (
            f"portal {item.portal_id}" if isinstance(item, HubSpotConnection) else f"row {item}"
        )
        with self._lock:
            self.done += 1
            if self.verbosity >= 2 or outcome in (FAILED, REAUTH, REJECTED, WOULD_REFRESH):
                detail = f": {error}" if error is not None and outcome != SKIPPED else ""
                write = self.stderr.write if outcome in (FAILED, REJECTED) else self.stdout.write
                write(f"{portal}: {outcome}{detail}")
            elif self.done % self.every == 0:
                self.stdout.write(f"... {self.done} connections processed")


class Command(BaseCommand):
    help = "Refresh the HubSpot access tokens that expire soon (run it from cron)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--within",
            type=_count(0),
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
            type=_count(1),
            default=4,
            metavar="N",
            help="Refresh N connections at once, each thread with its own database "
            "connection (default 4).",
        )
        parser.add_argument(
            "--retries",
            type=_count(0),
            default=3,
            metavar="N",
            help="Retries per connection when HubSpot is unavailable, with exponential "
            "backoff that honours Retry-After (default 3).",
        )
        # First backoff delay in seconds; tests set it near zero.
        parser.add_argument("--backoff-base", type=float, default=1.0, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["backoff_base"] < 0:
            raise CommandError("--backoff-base must be zero or more seconds.")
        verbosity: int = options["verbosity"]
        progress = _Progress(self.stdout, self.stderr, verbosity)
        summary = refresh_expiring_tokens(
            within=timedelta(seconds=options["within"]),
            portals=options["portals"],
            force=options["force"],
            dry_run=options["dry_run"],
            concurrency=options["concurrency"],
            retries=options["retries"],
            backoff_base=options["backoff_base"],
            progress=progress if verbosity >= 1 else None,
        )
        if summary.ok:
            logger.info("refresh_hubspot_tokens: %s", summary)
        else:
            logger.warning("refresh_hubspot_tokens: %s", summary)
        if summary.credentials_rejected:
            self.stderr.write(f"{CREDENTIALS_HINT} HubSpot said: {summary.credentials_rejected}")
        if verbosity >= 1 or not summary.ok:
            self.stdout.write(str(summary))
        if summary.exit_status:
            raise SystemExit(summary.exit_status)
