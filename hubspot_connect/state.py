"""The OAuth ``state``: random, bound to the session, single use, short lived.

Each pending flow is kept in the session under its state with the ``next`` URL, the
redirect URI it used, the portal it asked for and when it began, so several flows (two
tabs) can be pending at once.

A used state is also recorded in the default cache (under a hash of it, for
``HUBSPOT_STATE_MAX_AGE``): with sessions kept in a signed cookie, replaying the cookie
from before the callback would otherwise bring the used state back. Across processes
that needs a cache they share (check ``hubspot_connect.W003``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _

from .conf import app_settings
from .exceptions import StateError

SESSION_KEY = "hubspot_connect_pending"
MAX_PENDING = 5
#: A longer ``next`` is dropped: the session (maybe a cookie) must stay small.
MAX_NEXT_LENGTH = 2000
USED_KEY_PREFIX = "hubspot_connect:used-state:"


@dataclass(frozen=True)
class PendingFlow:
    next_url: str | None
    redirect_uri: str
    created_at: float
    portal_id: int | None = None


def safe_next_url(request: HttpRequest, next_url: str | None) -> str | None:
    """``next_url`` if it stays on this site, else ``None``."""
    # Browsers drop tabs and newlines anywhere in a URL; urlsplit drops them too, so
    # "//\t/evil.example" would pass as a path yet redirect as "//%09/evil.example".
    if not next_url or any(ord(char) < 0x20 or ord(char) == 0x7F for char in next_url):
        return None
    if url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return next_url
    return None


def storable_next_url(request: HttpRequest, next_url: str | None) -> str | None:
    """``next_url`` if it stays on this site and is at most ``MAX_NEXT_LENGTH`` long."""
    if next_url and len(next_url) > MAX_NEXT_LENGTH:
        return None
    return safe_next_url(request, next_url)


NOT_PENDING = _(
    "The state parameter does not belong to a connection started in this browser "
    "session, or it was already used."
)


def _pending(request: HttpRequest) -> dict[str, dict[str, object]]:
    stored = request.session.get(SESSION_KEY)
    return dict(stored) if isinstance(stored, dict) else {}


def issue_state(
    request: HttpRequest,
    *,
    redirect_uri: str,
    next_url: str | None = None,
    portal_id: int | None = None,
) -> str:
    """Start a flow: remember it in the session and return its ``state``.

    ``portal_id`` is the portal the consent screen was opened for, if any; the callback
    compares it with the portal HubSpot connected.
    """
    now = time.time()
    max_age = app_settings.STATE_MAX_AGE
    pending = {
        key: flow
        for key, flow in _pending(request).items()
        if now - float(flow.get("created_at", 0)) <= max_age  # type: ignore[arg-type]
    }
    while len(pending) >= MAX_PENDING:
        oldest = min(pending, key=lambda key: float(pending[key]["created_at"]))  # type: ignore[arg-type]
        del pending[oldest]
    state = secrets.token_urlsafe(32)
    pending[state] = {
        "next": storable_next_url(request, next_url),
        "redirect_uri": redirect_uri,
        "created_at": now,
        "portal_id": portal_id,
    }
    request.session[SESSION_KEY] = pending
    return state


def consume_state(request: HttpRequest, state: str | None) -> PendingFlow:
    """End a flow: the ``state`` must be one this session issued, unused and not expired.

    The state is removed whatever the outcome, so it can never be used twice; a state
    recorded as used in the cache is refused even if a replayed session still holds it.
    """
    if not state:
        raise StateError(_("The callback has no state parameter."))
    pending = _pending(request)
    match = next((key for key in pending if constant_time_compare(key, state)), None)
    if match is None:
        raise StateError(NOT_PENDING)
    flow = pending.pop(match)
    request.session[SESSION_KEY] = pending
    created_at = float(flow.get("created_at", 0))  # type: ignore[arg-type]
    max_age = app_settings.STATE_MAX_AGE
    if time.time() - created_at > max_age:
        raise StateError(_("The connection attempt took too long and expired."))
    # add() is atomic: of two callbacks racing with the same state, one wins.
    if not caches[DEFAULT_CACHE_ALIAS].add(used_state_key(match), True, timeout=max_age):
        raise StateError(NOT_PENDING)
    next_url = flow.get("next")
    portal_id = flow.get("portal_id")
    return PendingFlow(
        next_url=next_url if isinstance(next_url, str) else None,
        redirect_uri=str(flow.get("redirect_uri", "")),
        created_at=created_at,
        portal_id=portal_id if type(portal_id) is int else None,
    )


def used_state_key(state: str) -> str:
    """The cache key recording that ``state`` was used: a hash, never the state itself."""
    return USED_KEY_PREFIX + hashlib.sha256(state.encode()).hexdigest()
