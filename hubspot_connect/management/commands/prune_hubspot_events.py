from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hubspot_connect.conf import app_settings
from hubspot_connect.events import prune


def _days(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


class Command(BaseCommand):
    help = "Delete HubSpot connection history older than HUBSPOT_EVENT_RETENTION days."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=_days,
            metavar="N",
            help="Keep N days instead of HUBSPOT_EVENT_RETENTION (default 90).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] or app_settings.EVENT_RETENTION
        result = prune(days, dry_run=options["dry_run"])
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb} {result.events} event(s) and {result.hours} hourly count(s) older than "
            f"{days} day(s)"
        )
