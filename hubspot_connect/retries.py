"""When a call to HubSpot's API is tried again, and after how long: plain decisions.

The sync session (:mod:`hubspot_connect.session`), the async one
(:mod:`hubspot_connect.aio`) and the SDK client (:mod:`hubspot_connect.sdk`) all send
through one loop shape and ask a :class:`Retries` what to do after each answer or error:

* 429: wait as HubSpot says (``Retry-After``, else the window of the body's
  ``policyName``: 1 s for ``SECONDLY``, 10 s for ``TEN_SECONDLY_ROLLING``) and send again,
  any method (a 429 was not processed); a ``DAILY`` limit is never waited for:
  :class:`HubSpotRateLimited` is raised at once, as it is when the wait would pass the
  caller's ``max_wait``.
* 502, 503, 504, timeouts and connection errors: idempotent methods (GET, HEAD, OPTIONS,
  PUT, DELETE) are sent again after an exponential backoff with jitter, at most
  :data:`MAX_TRANSIENT_RETRIES` times; POST and PATCH only when the caller opted in
  (``retry=True``), since HubSpot may have acted on the first one.
* 401: refresh the access token once (at most one refresh per token, see
  :func:`hubspot_connect.access.refresh_or_wait`) and send once more.

Every wait (the shared budget's included) comes out of one ``max_wait`` per request.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .exceptions import HubSpotRateLimited
from .transport import parse_retry_after

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
TRANSIENT_STATUSES = frozenset({502, 503, 504})
#: Seconds to wait after a 429 without ``Retry-After``, by HubSpot's ``policyName``.
POLICY_WINDOWS = {"SECONDLY": 1.0, "TEN_SECONDLY_ROLLING": 10.0}
DEFAULT_MAX_WAIT = 30.0
MAX_TRANSIENT_RETRIES = 4
MAX_RATE_LIMIT_RETRIES = 5
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0


@dataclass(frozen=True)
class Action:
    """What to do after an answer: ``send`` again after ``delay`` seconds (``refresh``
    the token first if asked), or ``return`` the answer to the caller. ``policy`` is set
    after a 429, so that the shared budget can be told."""

    kind: str
    delay: float = 0.0
    refresh: bool = False
    policy: str = ""


RETURN = Action("return")


def policy_name(body: bytes) -> str:
    """The ``policyName`` of a HubSpot 429 body, or ``""``."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return ""
    value = data.get("policyName") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


class Retries:
    """The retry decisions for one request (``what``, e.g. ``"GET /crm/…"``, names it in
    messages; it never contains a query string, where personal data may travel)."""

    def __init__(
        self,
        method: str,
        what: str,
        *,
        max_wait: float,
        retry: bool | None = None,
        backoff: float = BACKOFF_BASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.method = method.upper()
        self.what = what
        self.retry_transient = self.method in IDEMPOTENT if retry is None else retry
        self.backoff = backoff
        self.clock = clock
        self.deadline = clock() + max(0.0, max_wait)
        self.transient = 0
        self.rate_limited = 0
        self.refreshed = False

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def after_status(self, status: int, headers: Mapping[str, str], body: bytes = b"") -> Action:
        """What to do after an answer with HTTP ``status`` (``body``: a 429's)."""
        if status == 401 and not self.refreshed:
            self.refreshed = True
            return Action("send", refresh=True)
        if status == 429:
            return self._rate_limited(headers, body)
        if status in TRANSIENT_STATUSES:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            delay = self._transient_delay(retry_after)
            return RETURN if delay is None else Action("send", delay)
        return RETURN

    def after_error(self) -> float | None:
        """Seconds to wait before sending again after a timeout or connection error;
        ``None``: give up (the caller re-raises the error)."""
        return self._transient_delay(None)

    def _transient_delay(self, retry_after: float | None) -> float | None:
        if not self.retry_transient or self.transient >= MAX_TRANSIENT_RETRIES:
            return None
        ceiling = min(BACKOFF_CAP, self.backoff * 2.0**self.transient)
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter
        if retry_after is not None:
            delay = max(delay, retry_after)
        if delay > self.remaining():
            return None
        self.transient += 1
        return delay

    def _rate_limited(self, headers: Mapping[str, str], body: bytes) -> Action:
        policy = policy_name(body)
        retry_after = parse_retry_after(headers.get("Retry-After"))
        if policy == "DAILY":
            raise HubSpotRateLimited(
                f"HubSpot's daily request limit for this portal is used up ({self.what}); "
                "it resets at midnight in the account's time zone.",
                policy=policy,
                retry_after=retry_after,
            )
        window = POLICY_WINDOWS.get(policy, 10.0)
        wait = window if retry_after is None else retry_after
        wait += random.uniform(0, min(wait, window) * 0.1)  # jitter
        if self.rate_limited >= MAX_RATE_LIMIT_RETRIES or wait > self.remaining():
            raise HubSpotRateLimited(
                f"HubSpot's rate limit {policy or '(no policy named)'} was reached "
                f"({self.what}) and waiting {wait:.1f} s more is not allowed (max_wait).",
                policy=policy,
                retry_after=wait,
            )
        self.rate_limited += 1
        return Action("send", wait, policy=policy or "TEN_SECONDLY_ROLLING")
