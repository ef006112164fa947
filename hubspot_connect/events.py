"""The connection history: events, refreshes counted per hour, pruning.

Events are few by design. A successful refresh is not an event: it is counted on its row
(``refresh_count``) and per hour (:class:`HubSpotRefreshHour`). A failing refresh writes
an event when its streak starts and when the error changes, not once per retry, so an
outage adds one row per portal, not one per attempt.

Writing history never breaks what is being recorded: an error is logged and swallowed
(behind a savepoint when the caller has a transaction open, so it is not spoiled). The
refresh and connect services call these functions inside their durable blocks (see
:mod:`hubspot_connect.db`), so what they record commits with the tokens, whatever the
caller's transaction does.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from .conf import app_settings
from .models import EventKind, HubSpotConnection, HubSpotConnectionEvent, HubSpotRefreshHour

logger = logging.getLogger("hubspot_connect")

#: The outcomes counted per hour (the columns of :class:`HubSpotRefreshHour`).
REFRESHED, FAILED, NEEDS_REAUTH = "refreshed", "failed", "needs_reauth"
OUTCOMES = (REFRESHED, FAILED, NEEDS_REAUTH)

_MESSAGE_LENGTH = 500
_CORRELATION = re.compile(r" \(correlation id ([^)]{1,64})\)")
_RETRY_AFTER = re.compile(r"; retry after [\d.]+ s")


def event_alias(connection: HubSpotConnection | None = None) -> str:
    return router.db_for_write(HubSpotConnectionEvent, instance=connection)


@contextlib.contextmanager
def _guarded(alias: str) -> Iterator[None]:
    """A savepoint when a transaction is open on ``alias``: a failed write spoils nothing."""
    if connections[alias].in_atomic_block:
        with transaction.atomic(using=alias):
            yield
    else:
        yield


def _actor_id(actor: Any) -> Any:
    return actor.pk if getattr(actor, "is_authenticated", False) else None


def correlation_id(error: BaseException) -> str:
    """HubSpot's correlation id of a failed request, from the error or its message."""
    found = str(getattr(error, "correlation_id", "") or "")
    if not found:
        match = _CORRELATION.search(str(error))
        found = match.group(1) if match else ""
    return found[:64]


def error_key(message: str) -> str:
    """A failure's message without what changes on every attempt (correlation id, wait)."""
    return _RETRY_AFTER.sub("", _CORRELATION.sub("", message))


def record(
    kind: str,
    connection: HubSpotConnection | None = None,
    *,
    message: str = "",
    http_status: int | None = None,
    correlation: str = "",
    actor: Any = None,
    using: str | None = None,
) -> HubSpotConnectionEvent | None:
    """Append one event (``connection=None``: the whole app); ``None`` if it failed.

    ``message`` must hold no secret: callers pass texts of this app's exceptions, which
    never contain one. ``actor`` is a user or ``None``; only its primary key is stored
    (the user model may live on another database).
    """
    alias = using or event_alias(connection)
    event = HubSpotConnectionEvent(
        connection_id=connection.pk if connection is not None else None,
        kind=kind,
        message=message[:_MESSAGE_LENGTH],
        http_status=http_status,
        correlation_id=correlation[:64],
        actor_id=_actor_id(actor),
    )
    try:
        with _guarded(alias):
            event.save(using=alias, force_insert=True)
    except Exception:
        logger.exception(
            "Could not record the '%s' event of %s",
            kind,
            f"portal {connection.portal_id}" if connection is not None else "the app",
        )
        return None
    return event


def record_many(
    kind: str, connection_ids: Iterable[int], *, message: str = "", using: str | None = None
) -> int:
    """One event of ``kind`` for each connection, with one INSERT; how many were written."""
    alias = using or event_alias()
    rows = [
        HubSpotConnectionEvent(connection_id=pk, kind=kind, message=message[:_MESSAGE_LENGTH])
        for pk in connection_ids
    ]
    if not rows:
        return 0
    try:
        with _guarded(alias):
            HubSpotConnectionEvent.objects.using(alias).bulk_create(rows)
    except Exception:
        logger.exception("Could not record %d '%s' events", len(rows), kind)
        return 0
    return len(rows)


def record_error(
    kind: str,
    connection: HubSpotConnection | None,
    error: BaseException,
    *,
    actor: Any = None,
    using: str | None = None,
) -> HubSpotConnectionEvent | None:
    """:func:`record` an error of this app (its text holds no secret), status and id included."""
    return record(
        kind,
        connection,
        message=str(error),
        http_status=getattr(error, "http_status", None),
        correlation=correlation_id(error),
        actor=actor,
        using=using,
    )


# -- refreshes counted per hour -------------------------------------------------------------


def _hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def add_to_hour(hour: datetime, counts: dict[str, int], *, using: str | None = None) -> None:
    """Add ``counts`` (outcome -> number) to one hour's row: one UPDATE, an INSERT once."""
    changes = {name: F(name) + number for name, number in counts.items() if number}
    if not changes:
        return
    alias = using or router.db_for_write(HubSpotRefreshHour)
    rows = HubSpotRefreshHour.objects.using(alias)
    for attempt in (1, 2):
        try:
            with _guarded(alias):
                if not rows.filter(hour=hour).update(**changes):
                    rows.create(hour=hour, **{name: counts.get(name, 0) for name in OUTCOMES})
            return
        except IntegrityError:
            if attempt == 1:
                continue  # another process created the hour meanwhile: add to its row
            logger.exception("Could not count %s refreshes of %s", counts, hour)
        except Exception:
            logger.exception("Could not count %s refreshes of %s", counts, hour)
            return


class RefreshTally:
    """Refresh outcomes per hour, counted in memory by a batch run and written per chunk.

    Thread safe: the run's worker threads :meth:`add`, its producer :meth:`flush`\\ es.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hours: dict[datetime, dict[str, int]] = {}

    def add(self, outcome: str, when: datetime | None = None) -> None:
        hour = _hour(when or timezone.now())
        with self._lock:
            counts = self._hours.setdefault(hour, dict.fromkeys(OUTCOMES, 0))
            counts[outcome] += 1

    def take(self) -> dict[datetime, dict[str, int]]:
        """The counts so far, which are then forgotten."""
        with self._lock:
            hours, self._hours = self._hours, {}
        return hours

    def flush(self, *, using: str | None = None) -> None:
        for hour, counts in sorted(self.take().items()):
            add_to_hour(hour, counts, using=using)


@dataclass
class Outcome:
    """What one refresh attempt adds to the history, written once its result is stored."""

    counted: str
    tally: RefreshTally | None = None
    events: list[tuple[str, str, BaseException | None]] = field(default_factory=list)

    def record(self, connection: HubSpotConnection, *, using: str) -> None:
        for kind, message, error in self.events:
            if error is not None:
                record_error(kind, connection, error, using=using)
            else:
                record(kind, connection, message=message, using=using)
        if self.tally is not None:
            self.tally.add(self.counted)
        else:
            add_to_hour(_hour(timezone.now()), {self.counted: 1}, using=using)


def refresh_failed(
    connection: HubSpotConnection,
    error: BaseException,
    *,
    reauth: bool,
    tally: RefreshTally | None = None,
) -> Outcome:
    """The outcome of a failed refresh; ``connection`` still holds the row as it was before.

    A failure is an event when HubSpot rejected the refresh token (needs re-auth), when a
    streak of failures starts, and when the error changes during one; not on each retry.
    """
    if reauth:
        return Outcome(NEEDS_REAUTH, tally, [(EventKind.NEEDS_REAUTH, "", error)])
    outcome = Outcome(FAILED, tally)
    if not connection.refresh_failures or error_key(connection.last_error) != error_key(
        str(error)
    ):
        outcome.events.append((EventKind.REFRESH_FAILED, "", error))
    return outcome


def refreshed(
    connection: HubSpotConnection,
    scopes: Iterable[str] | None,
    *,
    tally: RefreshTally | None = None,
) -> Outcome:
    """The outcome of a successful refresh (``connection`` still holds the row as it was)."""
    outcome = Outcome(REFRESHED, tally)
    if connection.refresh_failures:
        message = gettext("Refreshed again after %(count)d failed attempt(s).") % {
            "count": connection.refresh_failures
        }
        outcome.events.append((EventKind.RECOVERED, message, None))
    if scopes is not None:
        change = scopes_change(connection.scopes, scopes)
        if change:
            outcome.events.append((EventKind.SCOPES_CHANGED, change, None))
    return outcome


def scopes_change(before: Iterable[str] | None, after: Iterable[str]) -> str:
    """What changed between two grants, in words (``""`` when nothing did)."""
    old = {str(scope) for scope in before or ()}
    new = {str(scope) for scope in after}
    if old == new:
        return ""
    parts = []
    if new - old:
        parts.append(gettext("granted %(scopes)s") % {"scopes": ", ".join(sorted(new - old))})
    if old - new:
        parts.append(gettext("no longer %(scopes)s") % {"scopes": ", ".join(sorted(old - new))})
    missing = set(app_settings.SCOPES) - new
    if missing:
        parts.append(
            gettext("missing required %(scopes)s") % {"scopes": ", ".join(sorted(missing))}
        )
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


# -- connect and disconnect -------------------------------------------------------------------


def connected(
    connection: HubSpotConnection,
    *,
    created: bool,
    before: tuple[list[str] | None, str] | None,
    actor: Any = None,
    using: str | None = None,
) -> None:
    """A portal was connected (``created``) or connected again; ``before``: scopes, status."""
    if created or before is None:
        record(EventKind.CONNECTED, connection, actor=actor, using=using)
        return
    scopes, status = before
    message = ""
    if status != connection.status:
        labels = dict(HubSpotConnection.Status.choices)
        message = gettext("Was %(status)s.") % {"status": labels.get(status, status)}
    record(EventKind.RECONNECTED, connection, message=message, actor=actor, using=using)
    change = scopes_change(scopes, connection.scopes or [])
    if change:
        record(EventKind.SCOPES_CHANGED, connection, message=change, actor=actor, using=using)


# -- reading and pruning ----------------------------------------------------------------------


def last_credentials_rejection(using: str | None = None) -> HubSpotConnectionEvent | None:
    """The last time HubSpot refused the app's own client id or secret, if ever."""
    events = HubSpotConnectionEvent.objects.using(using or event_alias())
    return (
        events.filter(connection__isnull=True, kind=EventKind.CREDENTIALS_REJECTED)
        .order_by("-created_at", "-pk")
        .first()
    )


@dataclass
class Pruned:
    events: int = 0
    hours: int = 0


def prune(
    days: int | None = None,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    chunk_size: int = 5000,
) -> Pruned:
    """Delete events and hourly counts older than ``days`` (default HUBSPOT_EVENT_RETENTION).

    Deletes in chunks, so no statement holds locks on a huge number of rows.
    """
    days = app_settings.EVENT_RETENTION if days is None else days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    alias = event_alias()
    events = HubSpotConnectionEvent.objects.using(alias)
    hours = HubSpotRefreshHour.objects.using(router.db_for_write(HubSpotRefreshHour))
    old_events = events.filter(created_at__lt=cutoff)
    old_hours = hours.filter(hour__lt=cutoff)
    if dry_run:
        return Pruned(old_events.count(), old_hours.count())
    result = Pruned()
    while pks := list(old_events.order_by().values_list("pk", flat=True)[:chunk_size]):
        result.events += events.filter(pk__in=pks).delete()[0]
    result.hours = old_hours.delete()[0]
    return result
