"""The health summary above the connection list: counts, refreshes per hour, in two queries.

The first query counts connections by health (and reads the last refusal of the app's
own credentials in the same statement); the second reads the hourly refresh counts of
the last 48 hours. Neither grows with the number of portals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Q, Subquery, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext, ngettext

from ..conf import app_settings
from ..models import (
    ACTIVE,
    DISCONNECTED,
    GRANTED_TEXT,
    NEEDS_REAUTH,
    EventKind,
    HubSpotConnection,
    HubSpotConnectionEvent,
    HubSpotRefreshHour,
    missing_scopes_q,
)
from .display import EXPIRING_SOON, local_time

HOURS = 48
#: Chart geometry, in SVG user units (the SVG stretches to the width of the page).
BAR_WIDTH, BAR_GAP, CHART_HEIGHT = 10, 2, 100
_MIN_BAR = 3  # a single failure among thousands of refreshes stays visible


@dataclass
class Bar:
    hour: datetime
    refreshed: int
    failed: int
    needs_reauth: int
    x: int = 0
    segments: tuple[tuple[str, float, float], ...] = ()  # (css class, y, height)

    @property
    def total(self) -> int:
        return self.refreshed + self.failed + self.needs_reauth

    @property
    def label(self) -> str:
        start = local_time(self.hour)
        return gettext(
            "%(start)s: %(refreshed)d refreshed, %(failed)d failed, %(reauth)d needs re-auth"
        ) % {
            "start": date_format(start, "SHORT_DATETIME_FORMAT"),
            "refreshed": self.refreshed,
            "failed": self.failed,
            "reauth": self.needs_reauth,
        }


def _counts(now: datetime) -> dict[str, Any]:
    """Every count of the summary, and the last credentials refusal, in one query."""
    expiring = Q(status=ACTIVE) & (
        Q(expires_at__isnull=True) | Q(expires_at__lte=now + EXPIRING_SOON)
    )
    missing = missing_scopes_q(app_settings.SCOPES)
    rejection = HubSpotConnectionEvent.objects.filter(
        connection__isnull=True, kind=EventKind.CREDENTIALS_REJECTED
    ).order_by("-created_at", "-pk")
    rows = HubSpotConnection.objects.alias(**{GRANTED_TEXT: Cast("scopes", TextField())})
    aggregates: dict[str, Any] = {
        "total": Count("pk"),
        "active": Count("pk", filter=Q(status=ACTIVE) & ~expiring),
        "expiring": Count("pk", filter=expiring),
        "failing": Count("pk", filter=Q(status=ACTIVE, refresh_failures__gt=0)),
        "needs_reauth": Count("pk", filter=Q(status=NEEDS_REAUTH)),
        "disconnected": Count("pk", filter=Q(status=DISCONNECTED)),
        "last_refresh": Max("last_refreshed_at"),
        # The same value on every row; MAX() only lifts it into this one statement.
        "rejected_at": Max(Subquery(rejection.values("created_at")[:1])),
        "rejected_message": Max(Subquery(rejection.values("message")[:1])),
    }
    if missing is not None:
        aggregates["missing_scopes"] = Count("pk", filter=~Q(status=DISCONNECTED) & missing)
    counts: dict[str, Any] = rows.aggregate(**aggregates)
    counts.setdefault("missing_scopes", 0)
    return counts


def _bars(now: datetime) -> list[Bar]:
    """The last 48 hours, oldest first, with the counts of the hours that had refreshes."""
    current = now.replace(minute=0, second=0, microsecond=0)
    start = current - timedelta(hours=HOURS - 1)
    rows = HubSpotRefreshHour.objects.filter(hour__gte=start, hour__lte=current)
    found = {row.hour: row for row in rows}
    bars = []
    for n in range(HOURS):
        hour = start + timedelta(hours=n)
        row = found.get(hour)
        bars.append(
            Bar(hour, row.refreshed, row.failed, row.needs_reauth)
            if row is not None
            else Bar(hour, 0, 0, 0)
        )
    _lay_out(bars)
    return bars


def _lay_out(bars: list[Bar]) -> None:
    top = max((bar.total for bar in bars), default=0) or 1
    for n, bar in enumerate(bars):
        bar.x = n * (BAR_WIDTH + BAR_GAP)
        y = float(CHART_HEIGHT)
        segments = []
        for css, value in (
            ("refreshed", bar.refreshed),
            ("failed", bar.failed),
            ("reauth", bar.needs_reauth),
        ):
            if not value:
                continue
            height = max(_MIN_BAR, CHART_HEIGHT * value / top)
            y -= height
            segments.append((css, round(max(y, 0.0), 2), round(height, 2)))
        bar.segments = tuple(segments)


def health_summary(now: datetime | None = None) -> dict[str, Any]:
    """What the summary template shows (see ``…/hubspotconnection/summary.html``)."""
    now = now or timezone.now()
    counts = _counts(now)
    bars = _bars(now)
    totals = {
        "refreshed": sum(bar.refreshed for bar in bars),
        "failed": sum(bar.failed for bar in bars),
        "needs_reauth": sum(bar.needs_reauth for bar in bars),
    }
    rejected_at = counts["rejected_at"]
    last_refresh = counts["last_refresh"]
    rejection_current = rejected_at is not None and (
        last_refresh is None or last_refresh <= rejected_at
    )
    return {
        "counts": counts,
        "bars": bars,
        "busy": [bar for bar in bars if bar.total],
        "totals": totals,
        "chart_width": HOURS * (BAR_WIDTH + BAR_GAP) - BAR_GAP,
        "chart_height": CHART_HEIGHT,
        "bar_width": BAR_WIDTH,
        "chart_description": _description(totals),
        "credentials_rejected": counts["rejected_message"] if rejection_current else "",
        "credentials_rejected_at": rejected_at if rejection_current else None,
    }


def _description(totals: dict[str, int]) -> str:
    if not any(totals.values()):
        return gettext("No refreshes in the last 48 hours.")
    return ngettext(
        "In the last 48 hours: %(refreshed)d refresh succeeded, %(failed)d failed, "
        "%(reauth)d needed re-auth.",
        "In the last 48 hours: %(refreshed)d refreshes succeeded, %(failed)d failed, "
        "%(reauth)d needed re-auth.",
        totals["refreshed"],
    ) % {
        "refreshed": totals["refreshed"],
        "failed": totals["failed"],
        "reauth": totals["needs_reauth"],
    }
