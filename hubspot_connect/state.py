"""The OAuth ``state``: random, bound to the session, single use, short lived.

Each pending flow is kept in the session under its state with the ``next`` URL, the
redirect URI it used and when it began, so several flows (two tabs) can be pending at once.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from django.http import HttpRequest
from django.utils.crypto import constant_time_compare
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _

from .conf import app_settings
from .exceptions import StateError

SESSION_KEY = "hubspot_connect_pending"
MAX_PENDING = 5


@dataclass(frozen=True)
class PendingFlow:
    next_url: str | None
    redirect_uri: str
    created_at: float


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


def _pending(request: HttpRequest) -> dict[str, dict[str, object]]:
    stored = request.session.get(SESSION_KEY)
    return dict(stored) if isinstance(stored, dict) else {}


def issue_state(request: HttpRequest, *, redirect_uri: str, next_url: str | None = None) -> str:
    """Start a flow: remember it in the session and return its ``state``."""
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
        "next": safe_next_url(request, next_url),
        "redirect_uri": redirect_uri,
        "created_at": now,
    }
    request.session[SESSION_KEY] = pending
    return state


def consume_state(request: HttpRequest, state: str | None) -> PendingFlow:
    """End a flow: the ``state`` must be one this session issued, unused and not expired.

    The state is removed whatever the outcome, so it can never be used twice.
    """
    if not state:
        raise StateError(_("The callback has no state parameter."))
    pending = _pending(request)
    match = next((key for key in pending if constant_time_compare(key, state)), None)
    if match is None:
        raise StateError(
            _(
                "The state parameter does not belong to a connection started in this browser "
                "session, or it was already used."
            )
        )
    flow = pending.pop(match)
    request.session[SESSION_KEY] = pending
    created_at = float(flow.get("created_at", 0))  # type: ignore[arg-type]
    if time.time() - created_at > app_settings.STATE_MAX_AGE:
        raise StateError(_("The connection attempt took too long and expired."))
    next_url = flow.get("next")
    return PendingFlow(
        next_url=next_url if isinstance(next_url, str) else None,
        redirect_uri=str(flow.get("redirect_uri", "")),
        created_at=created_at,
    )
