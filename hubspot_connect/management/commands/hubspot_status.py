from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hubspot_connect.batch import CREDENTIALS_HINT
from hubspot_connect.events import last_credentials_rejection
from hubspot_connect.models import HubSpotConnection, HubSpotConnectionEvent

COLUMNS = ("portal", "hub domain", "status", "problems", "failing since", "last error")
PROBLEMS = {
    "needs_reauth": "needs re-auth",
    "failing": "failing",
    "expired": "expired",
    "missing_scopes": "missing scopes",
}
_LAST_ERROR_WIDTH = 80


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


class Command(BaseCommand):
    help = "List the HubSpot connections that need attention; exit status 1 if any does."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="List every connection.")
        parser.add_argument("--json", action="store_true", help="Print JSON, for tools.")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = HubSpotConnection.objects.defer("access_token", "refresh_token")
        listed = rows.all() if options["all"] else rows.needs_attention()
        connections = list(listed.order_by("portal_id").iterator(chunk_size=500))
        attention = sum(1 for row in connections if row.problems()) if options["all"] else None
        if attention is None:
            attention = len(connections)
        rejection = last_credentials_rejection()
        rejection_current = rejection is not None and not _refreshed_since(rejection)
        healthy = not attention and not rejection_current
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "healthy": healthy,
                        "attention": attention,
                        "credentials_rejected": _rejection_json(rejection, rejection_current),
                        "connections": [_row_json(row) for row in connections],
                    },
                    indent=2,
                )
            )
        else:
            self._table(connections, attention, rejection, rejection_current)
        if not healthy:
            raise SystemExit(1)

    def _table(
        self,
        connections: list[HubSpotConnection],
        attention: int,
        rejection: HubSpotConnectionEvent | None,
        rejection_current: bool,
    ) -> None:
        if connections:
            lines = [COLUMNS, *(_row_cells(row) for row in connections)]
            widths = [max(len(line[n]) for line in lines) for n in range(len(COLUMNS) - 1)]
            for line in lines:
                cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
                self.stdout.write("  ".join([*cells, line[-1]]).rstrip())
        if attention:
            self.stdout.write(f"{attention} connection(s) need attention.")
        elif not rejection_current:
            self.stdout.write("All HubSpot connections are healthy.")
        if rejection is not None:
            when = _iso(rejection.created_at)
            if rejection_current:
                self.stderr.write(
                    f"{CREDENTIALS_HINT} Last refused at {when}, and no refresh has "
                    f"succeeded since: {rejection.message}"
                )
            else:
                self.stdout.write(
                    f"HubSpot last refused the app's credentials at {when}; refreshes have "
                    "succeeded since."
                )


def _refreshed_since(rejection: HubSpotConnectionEvent) -> bool:
    return HubSpotConnection.objects.filter(last_refreshed_at__gt=rejection.created_at).exists()


def _row_cells(row: HubSpotConnection) -> tuple[str, ...]:
    last_error = " ".join(row.last_error.split()) if row.problems() else ""
    if len(last_error) > _LAST_ERROR_WIDTH:
        last_error = last_error[: _LAST_ERROR_WIDTH - 1] + "…"
    return (
        str(row.portal_id),
        row.hub_domain or "-",
        str(row.get_status_display()),
        ", ".join(PROBLEMS[problem] for problem in row.problems()) or "-",
        _iso(row.failing_since) or "-",
        last_error or "-",
    )


def _row_json(row: HubSpotConnection) -> dict[str, Any]:
    return {
        "portal_id": row.portal_id,
        "hub_domain": row.hub_domain,
        "status": row.status,
        "problems": row.problems(),
        "missing_scopes": sorted(row.missing_scopes),
        "expires_at": _iso(row.expires_at),
        "last_refreshed_at": _iso(row.last_refreshed_at),
        "refresh_count": row.refresh_count,
        "refresh_failures": row.refresh_failures,
        "failing_since": _iso(row.failing_since),
        "last_error": row.last_error,
    }


def _rejection_json(
    rejection: HubSpotConnectionEvent | None, current: bool
) -> dict[str, Any] | None:
    if rejection is None:
        return None
    return {
        "at": _iso(rejection.created_at),
        "message": rejection.message,
        "current": current,
        "hint": CREDENTIALS_HINT,
    }
