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

from .batch import refresh_expiring_tokens


@shared_task(name="hubspot_connect.tasks.refresh_hubspot_tokens", ignore_result=False)  # type: ignore[untyped-decorator]
def refresh_hubspot_tokens(
    within: int = 900,
    concurrency: int = 4,
    portals: list[int] | None = None,
    force: bool = False,
    retries: int = 3,
) -> dict[str, Any]:
    """The same work as ``manage.py refresh_hubspot_tokens``; returns the summary counts.

    Failures do not make the task fail: they are counted in the result (and logged), and
    the rows are retried on the next run. ``exit_status`` is the command's: 0 all
    refreshed, 1 a portal failed or needs re-auth, 2 HubSpot refused the app's own
    credentials (``credentials_rejected`` then says what to check; the run stopped).
    """
    summary = refresh_expiring_tokens(
        within=timedelta(seconds=within),
        concurrency=concurrency,
        portals=portals,
        force=force,
        retries=retries,
    )
    return {
        "refreshed": summary.refreshed,
        "skipped": summary.skipped,
        "needs_reauth": summary.needs_reauth,
        "failed": summary.failed,
        "awaiting_reauth": summary.awaiting_reauth,
        "ok": summary.ok,
        "exit_status": summary.exit_status,
        "credentials_rejected": summary.credentials_rejected,
        "summary": str(summary),
    }
