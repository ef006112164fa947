"""Refresh many connections: ``refresh_expiring_tokens()``, behind the command and the task.

Rows are read in chunks, refreshed by a pool of threads (each with its own database
connection and HTTP session), retried with backoff when HubSpot is unavailable, and
counted in a :class:`RefreshSummary`. Outcomes are counted per hour in memory and written
once per chunk. When HubSpot refuses the app's own credentials (``invalid_client``) the
run stops at once, records that once for the whole app, and changes no connection.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connections
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import events
from .client import close_client
from .db import Durable, write_alias
from .exceptions import (
    HubSpotConnectError,
    HubSpotUnavailable,
    InvalidClient,
    InvalidGrant,
    PortalNotConnected,
    TokenDecryptionError,
)
from .models import EventKind, HubSpotConnection
from .refresh import refresh_connection

logger = logging.getLogger("hubspot_connect")

REFRESHED, SKIPPED, REAUTH, FAILED = "refreshed", "skipped", "needs re-auth", "failed"
WOULD_REFRESH = "would refresh"
REJECTED = "credentials rejected"  # invalid_client: the app's id or secret, not the portal
#: What to check when HubSpot refuses the app's own credentials.
CREDENTIALS_HINT = (
    "HubSpot rejected the app's credentials (invalid_client): check HUBSPOT_CLIENT_ID and "
    "HUBSPOT_CLIENT_SECRET against the app's Auth settings in HubSpot. No connection was "
    "changed."
)
Progress = Callable[[HubSpotConnection | int, str, BaseException | None], None]


@dataclass
class RefreshSummary:
    """What one batch run did. ``ok`` is false when anything failed or needs re-auth.

    ``credentials_rejected`` holds HubSpot's answer when it refused the app's own
    credentials; the run stopped there (``exit_status`` 2).
    """

    refreshed: int = 0
    skipped: int = 0
    needs_reauth: int = 0
    failed: int = 0
    awaiting_reauth: int = 0
    dry_run: bool = False
    selected: int = 0
    credentials_rejected: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, outcome: str) -> None:
        with self._lock:
            if outcome == REFRESHED:
                self.refreshed += 1
            elif outcome == SKIPPED:
                self.skipped += 1
            elif outcome == REAUTH:
                self.needs_reauth += 1
            elif outcome != REJECTED:
                self.failed += 1

    @property
    def done(self) -> int:
        return self.refreshed + self.skipped + self.needs_reauth + self.failed

    @property
    def ok(self) -> bool:
        return not (self.failed or self.needs_reauth or self.credentials_rejected)

    @property
    def exit_status(self) -> int:
        """0 all refreshed, 1 a portal failed or needs re-auth, 2 the app's credentials."""
        if self.credentials_rejected:
            return 2
        return 0 if self.ok else 1

    def __str__(self) -> str:
        if self.dry_run:
            line = f"would refresh {self.selected}"
        else:
            line = (
                f"refreshed {self.refreshed}, skipped {self.skipped} (refreshed elsewhere), "
                f"needs re-auth {self.needs_reauth}, failed {self.failed}"
            )
        line = f"{line}; {self.awaiting_reauth} portal(s) await reconnection"
        if self.credentials_rejected:
            line = (
                "stopped: HubSpot rejected the app's credentials (invalid_client), check "
                f"HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET; {line}"
            )
        return line


def backoff_delay(
    attempt: int, retry_after: float | None, *, base: float = 1.0, cap: float = 30.0
) -> float:
    """Exponential backoff with jitter; never shorter than HubSpot's ``Retry-After``."""
    delay: float = min(cap, base * (2 ** min(attempt, 32))) * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, min(retry_after, 2 * cap))
    return delay


@dataclass
class _Run:
    within: timedelta
    force: bool
    retries: int
    backoff_base: float
    backoff_cap: float
    sleep: Callable[[float], None]
    progress: Progress | None
    summary: RefreshSummary
    tally: events.RefreshTally = field(default_factory=events.RefreshTally)
    stop: threading.Event = field(default_factory=threading.Event)
    rejection: InvalidClient | None = None

    def reject(self, error: InvalidClient) -> None:
        """Stop the run: the first ``invalid_client`` answer is the one recorded."""
        with self.summary._lock:
            if self.rejection is None:
                self.rejection = error
                self.summary.credentials_rejected = str(error)
            self.stop.set()

    def report(
        self, item: HubSpotConnection | int, outcome: str, error: BaseException | None = None
    ) -> None:
        self.summary.add(outcome)
        if self.progress is not None:
            self.progress(item, outcome, error)

    def refresh_one(self, connection: HubSpotConnection) -> None:
        attempt = 0
        while not self.stop.is_set():
            try:
                refreshed = refresh_connection(
                    connection, force=self.force, within=self.within, tally=self.tally
                )
            except InvalidClient as exc:
                self.reject(exc)
                return self.report(connection, REJECTED, exc)
            except InvalidGrant as exc:
                return self.report(connection, REAUTH, exc)
            except PortalNotConnected as exc:
                return self.report(connection, SKIPPED, exc)
            except HubSpotUnavailable as exc:
                if attempt >= self.retries:
                    return self.report(connection, FAILED, exc)
                self.sleep(
                    backoff_delay(
                        attempt, exc.retry_after, base=self.backoff_base, cap=self.backoff_cap
                    )
                )
                attempt += 1
                continue
            except Exception as exc:
                if not isinstance(exc, HubSpotConnectError):
                    logger.exception("Portal %s: unexpected error", connection.portal_id)
                return self.report(connection, FAILED, exc)
            return self.report(connection, REFRESHED if refreshed else SKIPPED)

    def work(self, items: queue.Queue[HubSpotConnection | None]) -> None:
        try:
            while (connection := items.get()) is not None:
                try:
                    self.refresh_one(connection)
                except Exception:
                    # Keep draining the queue: the producer must never block on a dead pool.
                    logger.exception("Portal %s: unexpected error", connection.portal_id)
        finally:
            connections.close_all()
            close_client()


def _chunks(pks: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(pks), size):
        yield pks[start : start + size]


def _load_chunk(pks: list[int], run: _Run) -> Iterable[HubSpotConnection]:
    rows = HubSpotConnection.objects.filter(pk__in=pks).order_by("expires_at", "pk")
    try:
        return list(rows)
    except TokenDecryptionError:
        pass
    loaded: list[HubSpotConnection] = []  # a row does not decrypt: load one by one
    for pk in pks:
        try:
            loaded.extend(HubSpotConnection.objects.filter(pk=pk))
        except TokenDecryptionError as exc:
            _record_undecryptable(pk, exc, run)
    return loaded


def _record_undecryptable(pk: int, error: TokenDecryptionError, run: _Run) -> None:
    row = HubSpotConnection.objects.filter(pk=pk)
    before = row.values_list("portal_id", "refresh_failures", "last_error").first()
    now = timezone.now()
    row.update(
        refresh_failures=F("refresh_failures") + 1,
        failing_since=Coalesce("failing_since", Value(now)),
        last_error=str(error),
        last_error_at=now,
    )
    if before is not None:
        portal_id, failures, last_error = before
        if not failures or events.error_key(last_error) != events.error_key(str(error)):
            stub = HubSpotConnection(pk=pk, portal_id=portal_id)
            events.record_error(EventKind.REFRESH_FAILED, stub, error)
    run.tally.add(events.FAILED)
    run.report(pk, FAILED, error)


def _finish(run: _Run) -> None:
    """Write the run's last hourly counts and, if HubSpot refused the app, that event."""
    durable = Durable(write_alias())
    with durable.block():
        run.tally.flush(using=durable.alias)
        if run.rejection is not None:
            events.record_error(EventKind.CREDENTIALS_REJECTED, None, run.rejection)
    if run.rejection is not None:
        logger.error("refresh_hubspot_tokens stopped: %s (%s)", CREDENTIALS_HINT, run.rejection)


def refresh_expiring_tokens(
    *,
    within: timedelta = timedelta(seconds=900),
    portals: Iterable[int] | None = None,
    force: bool = False,
    dry_run: bool = False,
    concurrency: int = 4,
    retries: int = 3,
    backoff_base: float = 1.0,
    backoff_cap: float = 30.0,
    chunk_size: int = 200,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RefreshSummary:
    """Refresh every active connection whose token expires within ``within``.

    The function behind ``manage.py refresh_hubspot_tokens`` and the Celery task.
    Rows are read ``chunk_size`` at a time, so memory stays flat however many portals
    there are; ``concurrency`` threads refresh, each with its own database connection.
    Rows another worker (or host) holds or has refreshed are counted as skipped.
    """
    rows = HubSpotConnection.objects.active()
    if portals is not None:
        rows = rows.filter(portal_id__in=list(portals))
    if not force:
        rows = rows.expiring(within)
    pks = list(rows.order_by("expires_at", "pk").values_list("pk", flat=True))
    summary = RefreshSummary(dry_run=dry_run, selected=len(pks))
    run = _Run(within, force, retries, backoff_base, backoff_cap, sleep, progress, summary)
    if dry_run:
        if progress is not None:
            for chunk in _chunks(pks, chunk_size):
                rows = HubSpotConnection.objects.filter(pk__in=chunk)
                for connection in rows.order_by("expires_at", "pk").defer(
                    "access_token", "refresh_token"
                ):
                    progress(connection, WOULD_REFRESH, None)
        summary.awaiting_reauth = HubSpotConnection.objects.needs_reauth().count()
        return summary
    try:
        _refresh(pks, run, concurrency, chunk_size)
    finally:
        _finish(run)
    summary.awaiting_reauth = HubSpotConnection.objects.needs_reauth().count()
    return summary


def _refresh(pks: list[int], run: _Run, concurrency: int, chunk_size: int) -> None:
    if concurrency <= 1:
        for chunk in _chunks(pks, chunk_size):
            if run.stop.is_set():
                break
            for connection in _load_chunk(chunk, run):
                run.refresh_one(connection)
            _flush(run)
    else:
        items: queue.Queue[HubSpotConnection | None] = queue.Queue(maxsize=2 * concurrency)
        workers = [
            threading.Thread(target=run.work, args=(items,), name=f"hubspot-refresh-{n}")
            for n in range(concurrency)
        ]
        for worker in workers:
            worker.start()
        try:
            for chunk in _chunks(pks, chunk_size):
                if run.stop.is_set():
                    break
                for connection in _load_chunk(chunk, run):
                    if run.stop.is_set():
                        break
                    items.put(connection)
                _flush(run)  # what the workers counted so far (the chunk before, mostly)
        finally:
            for _ in workers:
                items.put(None)
            for worker in workers:
                worker.join()


def _flush(run: _Run) -> None:
    durable = Durable(write_alias())
    with durable.block():
        run.tally.flush(using=durable.alias)
