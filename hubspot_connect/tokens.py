"""Token lifecycle: connect, refresh under a lease, read, use, disconnect.

A refresh first *claims* its row with one conditional UPDATE, talks to HubSpot with no
database transaction open, then stores the new tokens only while it still holds the
lease. A worker that dies simply lets its lease run out. This works the same on every
database Django supports, across threads, processes and hosts.
"""

from __future__ import annotations

import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import connections, router
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from .client import (
    USER_AGENT,
    HubSpotOAuthClient,
    TokenInfo,
    TokenResponse,
    close_client,
    get_client,
)
from .conf import app_settings
from .exceptions import (
    HubSpotConnectError,
    HubSpotOAuthError,
    HubSpotUnavailable,
    InvalidGrant,
    NeedsReauth,
    PortalDisconnected,
    PortalNotConnected,
    TokenDecryptionError,
    UnknownPortal,
)
from .models import ACTIVE, DISCONNECTED, NEEDS_REAUTH, HubSpotConnection
from .signals import (
    hubspot_connected,
    hubspot_disconnected,
    hubspot_needs_reauth,
    hubspot_tokens_refreshed,
)

logger = logging.getLogger("hubspot_connect")

PortalRef = int | str | HubSpotConnection
_HUBLET_PREFIX = re.compile(r"^([a-z]{2,4}\d{1,2})-")


# -- connecting ------------------------------------------------------------------------


def connect_portal(
    *,
    code: str,
    redirect_uri: str,
    user: AbstractBaseUser | AnonymousUser | None = None,
    request: HttpRequest | None = None,
    client: HubSpotOAuthClient | None = None,
) -> tuple[HubSpotConnection, bool]:
    """Exchange an authorization code and store the portal's tokens (create or update)."""
    client = client or get_client()
    sent_at = timezone.now()
    tokens = client.exchange_code(code, redirect_uri=redirect_uri)
    info: TokenInfo | None
    try:
        info = client.introspect(tokens.access_token)
    except HubSpotConnectError as exc:
        if tokens.hub_id is None:
            raise
        logger.warning("Portal %s connected, but introspection failed: %s", tokens.hub_id, exc)
        info = None
    portal_id = tokens.hub_id if tokens.hub_id is not None else (info and info.hub_id)
    if not portal_id:
        raise HubSpotUnavailable("HubSpot did not say which portal was connected.")
    values: dict[str, Any] = {
        "scopes": list(tokens.scopes or (info.scopes if info else ()) or []),
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": tokens.token_type,
        "expires_at": sent_at + timedelta(seconds=tokens.expires_in),
        "status": ACTIVE,
        "refresh_failures": 0,
        "last_error": "",
        "last_error_at": None,
        "lease_expires_at": None,
    }
    user_id = tokens.user_id if tokens.user_id is not None else (info and info.user_id)
    if user_id:
        values["hubspot_user_id"] = user_id
    hublet = (info.hublet if info else "") or _hublet_from(tokens)
    optional = {"hub_domain": info.hub_domain if info else "", "hublet": hublet}
    optional["hubspot_user_email"] = info.user if info else ""
    values.update({key: value for key, value in optional.items() if value})
    if user is not None and user.is_authenticated:
        values["connected_by"] = user
    connection, created = HubSpotConnection.objects.update_or_create(
        portal_id=int(portal_id), defaults=values
    )
    logger.info("Portal %s %s", connection.portal_id, "connected" if created else "reconnected")
    hubspot_connected.send(
        sender=HubSpotConnection, connection=connection, request=request, created=created
    )
    return connection, created


def _hublet_from(tokens: TokenResponse) -> str:
    match = _HUBLET_PREFIX.match(tokens.refresh_token)
    return match.group(1) if match else ""


# -- refreshing one connection ------------------------------------------------------------


def _ensure_usable(connection: HubSpotConnection) -> None:
    if connection.status == NEEDS_REAUTH:
        raise NeedsReauth(
            f"Portal {connection.portal_id} needs to be reconnected: HubSpot rejected its "
            "refresh token.",
            portal_id=connection.portal_id,
        )
    if connection.status == DISCONNECTED:
        raise PortalDisconnected(
            f"Portal {connection.portal_id} was disconnected.", portal_id=connection.portal_id
        )


def _copy_row(source: HubSpotConnection, target: HubSpotConnection) -> None:
    for model_field in HubSpotConnection._meta.concrete_fields:
        setattr(target, model_field.attname, getattr(source, model_field.attname))


def _due(connection: HubSpotConnection, within: timedelta, now: datetime) -> bool:
    return connection.expires_at is None or connection.expires_at <= now + within


_FIELDS = {field.name: field for field in HubSpotConnection._meta.concrete_fields}
_UPDATE_SQL: dict[tuple[str, tuple[str, ...]], str] = {}


def _update(connection: HubSpotConnection, lease: datetime, **values: Any) -> bool:
    """Write ``values`` (and ``updated_at``) only while the row is still under ``lease``.

    One portable UPDATE, prepared once per database and set of fields; each value goes
    through its field's own ``get_db_prep_save`` (so tokens are encrypted), as the ORM
    would do, without the ORM's per-call cost of building the statement.
    """
    values["updated_at"] = timezone.now()
    alias = router.db_for_write(HubSpotConnection)
    database = connections[alias]
    fields = _FIELDS
    key = (alias, tuple(values))
    if key not in _UPDATE_SQL:
        quote = database.ops.quote_name
        assignments = ", ".join(f"{quote(fields[name].column)} = %s" for name in values)
        _UPDATE_SQL[key] = (
            f"UPDATE {quote(HubSpotConnection._meta.db_table)} SET {assignments} "  # noqa: S608
            f"WHERE {quote(fields['id'].column)} = %s "
            f"AND {quote(fields['lease_expires_at'].column)} = %s"
        )
    params = [
        fields[name].get_db_prep_save(value, connection=database) for name, value in values.items()
    ]
    params += [connection.pk, database.ops.adapt_datetimefield_value(lease)]
    with database.cursor() as cursor:
        cursor.execute(_UPDATE_SQL[key], params)
        if cursor.rowcount != 1:
            return False
    for name, value in values.items():
        setattr(connection, name, value)
    return True


def _reread(connection: HubSpotConnection) -> None:
    try:
        # get() rather than first(): no ORDER BY on this hot path.
        current = HubSpotConnection.objects.get(pk=connection.pk)
    except HubSpotConnection.DoesNotExist:
        raise UnknownPortal(
            f"Portal {connection.portal_id} is not connected.", portal_id=connection.portal_id
        ) from None
    _copy_row(current, connection)


_CLAIM_SQL: dict[str, str] = {}


def _claim_sql(alias: str) -> str:
    """The claim statement for one database, built once (the ORM would rebuild it)."""
    if alias not in _CLAIM_SQL:
        quote = connections[alias].ops.quote_name
        column = {name: quote(field.column) for name, field in _FIELDS.items()}
        lease = column["lease_expires_at"]
        _CLAIM_SQL[alias] = (
            f"UPDATE {quote(HubSpotConnection._meta.db_table)} SET {lease} = %s "  # noqa: S608
            f"WHERE {column['id']} = %s AND {column['status']} = %s "
            f"AND {column['updated_at']} = %s AND ({lease} IS NULL OR {lease} < %s)"
        )
    return _CLAIM_SQL[alias]


def _claim(connection: HubSpotConnection) -> datetime | None:
    """Take the refresh lease with one conditional UPDATE; ``None`` if someone else has it.

    ``updated_at`` unchanged means the row is exactly our copy, so the caller's check of
    our copy's expiry holds for the row too: a row refreshed (or reconnected) since we
    read it is never refreshed again. The statement is plain portable SQL, prepared once
    per database: building it through the ORM cost more CPU than the rest of a refresh.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=app_settings.REFRESH_LEASE)
    alias = router.db_for_write(HubSpotConnection)
    database = connections[alias]
    adapt = database.ops.adapt_datetimefield_value
    params = [adapt(lease), connection.pk, ACTIVE, adapt(connection.updated_at), adapt(now)]
    with database.cursor() as cursor:
        cursor.execute(_claim_sql(alias), params)
        if cursor.rowcount != 1:
            return None
    connection.lease_expires_at = lease
    return lease


def _claim_or_reread(
    connection: HubSpotConnection, *, force: bool, within: timedelta
) -> datetime | None:
    """Claim the row; if that fails, re-read it and claim again only if our copy was stale."""
    seen_refresh = connection.last_refreshed_at
    lease = _claim(connection)
    if lease is not None:
        return lease
    _reread(connection)
    _ensure_usable(connection)
    now = timezone.now()
    if connection.lease_expires_at is not None and connection.lease_expires_at >= now:
        return None  # another worker is refreshing it right now
    if connection.last_refreshed_at != seen_refresh:
        return None  # refreshed elsewhere since we read it
    if not force and not _due(connection, within, now):
        return None  # reconnected meanwhile, with fresh tokens
    # Our copy was only out of date (another change, or a lease that ran out): retry once.
    return _claim(connection)


def _lost_lease(connection: HubSpotConnection) -> bool:
    """Our lease ran out during the HTTP call and another worker took the row over."""
    logger.warning(
        "Portal %s: the refresh lease ran out during the call to HubSpot; keeping what "
        "the worker that took over stored (raise HUBSPOT_REFRESH_LEASE if this recurs).",
        connection.portal_id,
    )
    _reread(connection)
    return False


def refresh_connection(
    connection: HubSpotConnection,
    force: bool = False,
    *,
    within: timedelta | None = None,
    client: HubSpotOAuthClient | None = None,
) -> bool:
    """Refresh ``connection``'s tokens if due (or ``force``), under the refresh lease.

    Returns ``True`` when this call stored new tokens and ``False`` when nothing was
    due or another worker refreshed (or is refreshing) the row; ``connection`` then
    holds the row as stored. Raises :class:`InvalidGrant` after marking the row
    ``needs_reauth``, and :class:`HubSpotUnavailable` or :class:`HubSpotOAuthError`
    after recording the failure; the stored tokens are untouched in both cases.
    """
    _ensure_usable(connection)
    if within is None:
        within = timedelta(seconds=app_settings.REFRESH_MARGIN)
    if not force and not _due(connection, within, timezone.now()):
        return False  # expiry only ever moves later, so the stored row is not due either
    lease = _claim_or_reread(connection, force=force, within=within)
    if lease is None:
        return False
    client = client or get_client()
    sent_at = timezone.now()
    try:
        if not connection.refresh_token:
            raise InvalidGrant(
                "No refresh token is stored for this portal.", error="invalid_grant"
            )
        tokens = client.refresh(connection.refresh_token)
    except (HubSpotUnavailable, HubSpotOAuthError) as exc:
        reauth = isinstance(exc, InvalidGrant)
        failure: dict[str, Any] = {
            "lease_expires_at": None,
            "refresh_failures": connection.refresh_failures + 1,
            "last_error": str(exc),
            "last_error_at": timezone.now(),
        }
        if reauth:
            failure["status"] = NEEDS_REAUTH
        if not _update(connection, lease, **failure):
            return _lost_lease(connection)
        if reauth:
            logger.warning("Portal %s needs re-authorization: %s", connection.portal_id, exc)
            hubspot_needs_reauth.send(sender=HubSpotConnection, connection=connection, error=exc)
        else:
            logger.warning("Refreshing portal %s failed: %s", connection.portal_id, exc)
        raise
    except BaseException:
        _update(connection, lease, lease_expires_at=None)
        raise
    values: dict[str, Any] = {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": tokens.token_type,
        "expires_at": sent_at + timedelta(seconds=tokens.expires_in),
        "last_refreshed_at": timezone.now(),
        "refresh_failures": 0,
        "last_error": "",
        "lease_expires_at": None,
    }
    if tokens.scopes is not None:
        values["scopes"] = list(tokens.scopes)
    if not _update(connection, lease, **values):
        return _lost_lease(connection)
    logger.debug("Portal %s refreshed", connection.portal_id)
    hubspot_tokens_refreshed.send(sender=HubSpotConnection, connection=connection)
    return True


# -- reading tokens ------------------------------------------------------------------------


def _load(portal: PortalRef) -> HubSpotConnection:
    if isinstance(portal, HubSpotConnection):
        return portal
    try:
        portal_id = int(portal)
    except (TypeError, ValueError):
        # The value is not echoed: it could be a token passed by mistake.
        raise UnknownPortal("That is not a HubSpot portal id (an integer).") from None
    try:
        return HubSpotConnection.objects.get(portal_id=portal_id)
    except HubSpotConnection.DoesNotExist:
        raise UnknownPortal(f"Portal {portal_id} is not connected.", portal_id=portal_id) from None


def _fresh(connection: HubSpotConnection, margin: timedelta) -> bool:
    return bool(
        connection.access_token
        and connection.expires_at is not None
        and connection.expires_at - timezone.now() > margin
    )


def _usable(connection: HubSpotConnection) -> bool:
    return bool(connection.access_token) and not connection.is_expired()


def _stored_token(connection: HubSpotConnection, why: str) -> str | None:
    if not _usable(connection):
        return None
    logger.warning(
        "Portal %s: %s; using the stored token until it expires at %s.",
        connection.portal_id,
        why,
        connection.expires_at,
    )
    return connection.access_token


def _leased(connection: HubSpotConnection) -> bool:
    lease = connection.lease_expires_at
    return lease is not None and lease >= timezone.now()


def _refresh_or_wait(connection: HubSpotConnection, margin: timedelta, *, force: bool) -> str:
    """Refresh, or wait (bounded, short sleeps) for the worker that holds the lease."""
    seen_refresh, seen_error = connection.last_refreshed_at, connection.last_error_at
    # Waiting longer than a lease is pointless (it would be ours to take by then), and a
    # web request should not hang on a dead worker for more than about one HTTP call.
    wait = min(app_settings.REFRESH_LEASE + 1, app_settings.HTTP_TIMEOUT + 5)
    deadline = time.monotonic() + wait
    delay = 0.02
    waiting = False
    while True:
        if waiting:  # one query per poll; claim only once the lease is free again
            _reread(connection)
            _ensure_usable(connection)
        else:
            try:
                if refresh_connection(connection, force=force, within=margin):
                    return connection.access_token
            except InvalidGrant as exc:
                raise NeedsReauth(
                    f"Portal {connection.portal_id} needs to be reconnected: {exc}",
                    portal_id=connection.portal_id,
                ) from None
            except (HubSpotUnavailable, HubSpotOAuthError):
                token = _stored_token(connection, "refreshing failed")
                if token is None:
                    raise
                return token
        if connection.last_refreshed_at != seen_refresh and connection.access_token:
            return connection.access_token  # another worker stored new tokens
        if not force and _fresh(connection, margin):
            return connection.access_token
        if connection.last_error_at != seen_error:
            token = _stored_token(connection, "another worker failed to refresh")
            if token is None:
                raise HubSpotUnavailable(
                    f"Portal {connection.portal_id}: refreshing failed (see last_error) and "
                    "the stored access token has expired."
                )
            return token
        if time.monotonic() >= deadline:
            token = _stored_token(connection, "another worker is still refreshing")
            if token is None:
                raise HubSpotUnavailable(
                    f"Portal {connection.portal_id}: timed out waiting for another worker "
                    "to refresh the token."
                )
            return token
        waiting = _leased(connection)
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def get_access_token(portal: PortalRef) -> str:
    """A valid access token for ``portal`` (a portal id or a ``HubSpotConnection``).

    One query and no HTTP while the stored token has more than HUBSPOT_REFRESH_MARGIN
    left (none when given a connection); otherwise it refreshes, or waits for the
    worker that is refreshing. While HubSpot is unavailable the stored token is
    returned until it expires, then :class:`HubSpotUnavailable` is raised.
    """
    connection = _load(portal)
    _ensure_usable(connection)
    margin = timedelta(seconds=app_settings.REFRESH_MARGIN)
    if _fresh(connection, margin):
        return connection.access_token
    return _refresh_or_wait(connection, margin, force=not connection.access_token)


class HubSpotSession(requests.Session):
    """A ``requests.Session`` for HubSpot's APIs on behalf of one portal.

    Relative URLs are joined to HUBSPOT_API_BASE_URL; requests to that host carry
    ``Authorization: Bearer …`` (never requests to any other host, redirects
    included); every request has the default timeout; a 401 refreshes the token once
    and retries once.
    """

    def __init__(self, connection: HubSpotConnection) -> None:
        super().__init__()
        self.connection = connection
        self.base_url = app_settings.API_BASE_URL
        self.timeout = app_settings.HTTP_TIMEOUT
        self.headers["User-Agent"] = USER_AGENT

    def _is_hubspot(self, url: str) -> bool:
        base, target = urlsplit(self.base_url), urlsplit(url)
        return (target.scheme, target.netloc) == (base.scheme, base.netloc)

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        url = url.decode() if isinstance(url, bytes) else url
        if not urlsplit(url).scheme:
            url = urljoin(self.base_url + "/", url.lstrip("/"))
        kwargs.setdefault("timeout", self.timeout)
        if not self._is_hubspot(url):
            return super().request(method, url, *args, **kwargs)
        headers: dict[str, str] = dict(kwargs.pop("headers", None) or {})
        headers["Authorization"] = f"Bearer {get_access_token(self.connection)}"
        kwargs["headers"] = headers
        response = super().request(method, url, *args, **kwargs)
        if response.status_code != 401:
            return response
        logger.info("Portal %s: HubSpot answered 401; refreshing once", self.connection.portal_id)
        response.close()
        margin = timedelta(seconds=app_settings.REFRESH_MARGIN)
        token = _refresh_or_wait(self.connection, margin, force=True)
        headers["Authorization"] = f"Bearer {token}"
        return super().request(method, url, *args, **kwargs)


def api_session(portal: PortalRef) -> HubSpotSession:
    """A ``requests.Session`` that calls HubSpot's APIs as ``portal``."""
    connection = _load(portal)
    _ensure_usable(connection)
    return HubSpotSession(connection)


# -- disconnecting ---------------------------------------------------------------------------


def disconnect_connection(connection: HubSpotConnection, *, revoke: bool = True) -> None:
    """Revoke at HubSpot (optionally), wipe both tokens, keep the row as ``disconnected``.

    If HubSpot cannot be reached the row is left as it was and :class:`HubSpotUnavailable`
    propagates, so the revocation can be retried. A token HubSpot no longer knows is
    simply wiped.
    """
    if revoke and connection.refresh_token:
        try:
            get_client().revoke(connection.refresh_token)
        except HubSpotOAuthError as exc:
            logger.info("Portal %s: HubSpot refused the revocation: %s", connection.portal_id, exc)
    connection.access_token = ""
    connection.refresh_token = ""
    connection.expires_at = None
    connection.lease_expires_at = None
    connection.status = DISCONNECTED
    connection.save(
        update_fields=[
            "access_token",
            "refresh_token",
            "expires_at",
            "lease_expires_at",
            "status",
            "updated_at",
        ]
    )
    logger.info("Portal %s disconnected", connection.portal_id)
    hubspot_disconnected.send(sender=HubSpotConnection, connection=connection)


# -- refreshing many connections ---------------------------------------------------------------

REFRESHED, SKIPPED, REAUTH, FAILED = "refreshed", "skipped", "needs re-auth", "failed"
WOULD_REFRESH = "would refresh"
Progress = Callable[[HubSpotConnection | int, str, BaseException | None], None]


@dataclass
class RefreshSummary:
    """What one batch run did. ``ok`` is false when anything failed or needs re-auth."""

    refreshed: int = 0
    skipped: int = 0
    needs_reauth: int = 0
    failed: int = 0
    awaiting_reauth: int = 0
    dry_run: bool = False
    selected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, outcome: str) -> None:
        with self._lock:
            if outcome == REFRESHED:
                self.refreshed += 1
            elif outcome == SKIPPED:
                self.skipped += 1
            elif outcome == REAUTH:
                self.needs_reauth += 1
            else:
                self.failed += 1

    @property
    def done(self) -> int:
        return self.refreshed + self.skipped + self.needs_reauth + self.failed

    @property
    def ok(self) -> bool:
        return not (self.failed or self.needs_reauth)

    def __str__(self) -> str:
        if self.dry_run:
            line = f"would refresh {self.selected}"
        else:
            line = (
                f"refreshed {self.refreshed}, skipped {self.skipped} (refreshed elsewhere), "
                f"needs re-auth {self.needs_reauth}, failed {self.failed}"
            )
        return f"{line}; {self.awaiting_reauth} portal(s) await reconnection"


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

    def report(
        self, item: HubSpotConnection | int, outcome: str, error: BaseException | None = None
    ) -> None:
        self.summary.add(outcome)
        if self.progress is not None:
            self.progress(item, outcome, error)

    def refresh_one(self, connection: HubSpotConnection) -> None:
        attempt = 0
        while True:
            try:
                refreshed = refresh_connection(connection, force=self.force, within=self.within)
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
            HubSpotConnection.objects.filter(pk=pk).update(
                refresh_failures=F("refresh_failures") + 1,
                last_error=str(exc),
                last_error_at=timezone.now(),
            )
            run.report(pk, FAILED, exc)
    return loaded


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
    if concurrency <= 1:
        for chunk in _chunks(pks, chunk_size):
            for connection in _load_chunk(chunk, run):
                run.refresh_one(connection)
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
                for connection in _load_chunk(chunk, run):
                    items.put(connection)
        finally:
            for _ in workers:
                items.put(None)
            for worker in workers:
                worker.join()
    summary.awaiting_reauth = HubSpotConnection.objects.needs_reauth().count()
    return summary


# -- key rotation --------------------------------------------------------------------------------


@dataclass
class RotationResult:
    rotated: int = 0
    current: int = 0
    failed: int = 0


def _raw_tokens(pks: list[int]) -> list[tuple[int, str, str]]:
    """The stored ciphertext of some rows, read past the field's decryption."""
    meta = HubSpotConnection._meta
    connection = connections[HubSpotConnection.objects.db]
    quote = connection.ops.quote_name
    pk, access, refresh = (
        quote(meta.get_field(name).column)  # type: ignore[union-attr,arg-type]
        for name in ("id", "access_token", "refresh_token")
    )
    placeholders = ", ".join(["%s"] * len(pks))
    sql = (
        f"SELECT {pk}, {access}, {refresh} FROM {quote(meta.db_table)} "  # noqa: S608
        f"WHERE {pk} IN ({placeholders})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, pks)
        return [
            (int(pk), access or "", refresh or "") for pk, access, refresh in cursor.fetchall()
        ]


def rotate_encryption_key(chunk_size: int = 200) -> RotationResult:
    """Re-encrypt every connection's tokens with the first key of FIELD_ENCRYPTION_KEY.

    Idempotent: rows whose ciphertext the first key already opens are left alone.
    """
    from cryptography.fernet import Fernet, InvalidToken

    from .fields import decrypt, get_fernet

    get_fernet()  # a missing or malformed key fails here, before anything is read
    first = Fernet(app_settings.ENCRYPTION_KEYS[0])

    def current(value: str) -> bool:
        try:
            first.decrypt(value.encode())
        except InvalidToken:
            return False
        return True

    result = RotationResult()
    pks = list(HubSpotConnection.objects.order_by("pk").values_list("pk", flat=True))
    for chunk in _chunks(pks, chunk_size):
        for pk, access, refresh in _raw_tokens(chunk):
            if all(not value or current(value) for value in (access, refresh)):
                result.current += 1
                continue
            try:
                values = {
                    "access_token": decrypt(access) if access else "",
                    "refresh_token": decrypt(refresh) if refresh else "",
                }
            except TokenDecryptionError:
                logger.error("Connection %s: its tokens decrypt with no configured key", pk)
                result.failed += 1
                continue
            # Only if the ciphertext is still what we read (a lookup on this field compares
            # the stored text as is): a refresh meanwhile stored new tokens, already
            # encrypted with the first key, which must not be overwritten with old ones.
            unchanged = HubSpotConnection.objects.filter(
                pk=pk, access_token=access, refresh_token=refresh
            )
            if unchanged.update(**values):
                result.rotated += 1
            else:
                result.current += 1
    return result
