"""Optional Celery task (``pip install django-hubspot-connect[celery]``).

Schedule it with Celery beat, for example every five minutes::

    CELERY_BEAT_SCHEDULE = {
        "refresh-hubspot-tokens": {
            "task": "hubspot_connect.tasks.refresh_hubspot_tokens",
            "schedule": 300,
        },
    }
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import shared_task

from .tokens import refresh_expiring_tokens


@shared_task(name="hubspot_connect.tasks.refresh_hubspot_tokens", ignore_result=False)  # type: ignore[untyped-decorator]
def refresh_hubspot_tokens(
    within: int = 900, concurrency: int = 4, portals: list[int] | None = None
) -> dict[str, Any]:
    """The same work as ``manage.py refresh_hubspot_tokens``; returns the summary counts."""
    summary = refresh_expiring_tokens(
        within=timedelta(seconds=within), concurrency=concurrency, portals=portals
    )
    return {
        "refreshed": summary.refreshed,
        "skipped": summary.skipped,
        "needs_reauth": summary.needs_reauth,
        "failed": summary.failed,
        "awaiting_reauth": summary.awaiting_reauth,
        "summary": str(summary),
    }
