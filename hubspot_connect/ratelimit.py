"""One request budget per portal, shared by every process and host through Django's cache.

HubSpot allows an OAuth app 110 requests per 10 seconds per installed account, and 5 per
second on the CRM search endpoints (``HUBSPOT_RATE_LIMIT``, ``HUBSPOT_SEARCH_RATE_LIMIT``).
Before each request is sent, :meth:`Budget.acquire` takes a place in the budget, waiting
(bounded) for one to come free, so the site's web workers, cron jobs and Celery workers
together stay under the limit instead of collecting 429s.

The algorithm: fixed sub-windows, each with a quota
----------------------------------------------------
Time is cut into *slots* of ``L`` seconds, aligned on the Unix epoch, so every process and
host agrees on where slots begin (up to clock skew). A slot admits at most ``q`` requests
per portal: a request takes a number in the current slot with one atomic
``cache.incr`` on the slot's key (``cache.add`` creates the key on first use, with a
timeout, so keys clean themselves up) and is sent if its number is at most ``q``;
otherwise it sleeps until a later slot and takes a number there. Numbers are never handed
back, so two requests can never hold the same place, whatever the interleaving of
processes, threads and hosts: the cache's atomic increment is the only arbiter.

Why it never exceeds the budget: an interval of length ``D`` touches at most
``ceil(D / L) + 1`` slots, so it contains at most ``q * (ceil(D / L) + 1)`` sent requests.
With ``m = floor(N / q)`` and ``L = D / (m - 1)`` that is ``q * m <= N`` for every
interval of length ``D``, wherever it starts: a rolling window, not only aligned ones.
``D`` is the window ``W`` plus a tolerance of ``W / 50``, at least 0.1 s (0.2 s for
HubSpot's 10 s window), for what a real deployment adds: clock skew between hosts, and
the spread of the time from taking a number to HubSpot receiving the request (thread
scheduling, a new TLS connection).

For 110 requests per 10 s, ``q = 5`` and ``L = 10.2 / 21 = 0.486 s``: never more than 110
requests in any 10.2 s, and up to 103 per 10 s (94 % of the budget) under full load. For
search, 5 per second: ``q = 1``, ``L = 1.1 / 4 = 0.275 s``, up to 3.6 per second. ``q`` is
about ``N / 22``: a larger ``q`` allows larger bursts but leaves more of the budget
unused (``q = 10`` would be 91 % with no tolerance at all); a budget of one request uses
only every other slot of length ``D``.

Why not a sliding log or a sliding sum of sub-window counters, which allow a burst of the
whole budget at once: they read every counter of the window on each request (about 40
keys), which on Redis costs more CPU than the HTTP request itself. Here a request costs
one atomic increment: ``cache.incr`` (plus ``cache.add`` for a slot's first request) on
any backend; on Django's own Redis backend, INCR and EXPIRE in one pipelined round trip
through the cache's client, made once (``RedisCache.incr()`` builds a client and sends
EXISTS first, every call: measured, three times the CPU).

Without a shared cache the budget is per process: ``LocMemCache`` counts each process on
its own (threads share it), and ``DummyCache`` counts nothing (system checks W005-W007).
If the cache fails (Redis down), requests go out unmetered, with a warning in the log,
and HubSpot's 429 answers are still waited out by the session.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache import BaseCache, caches
from django.core.cache.backends.redis import RedisCache

from .conf import app_settings
from .exceptions import HubSpotRateLimited

logger = logging.getLogger("hubspot_connect")

#: CRM search endpoints (``POST /crm/v3/objects/contacts/search``, dated paths alike).
SEARCH_PATH = re.compile(r"/crm/.+/search/?")
#: The HubSpot policy each budget keeps the site under.
POLICIES = {"api": "TEN_SECONDLY_ROLLING", "search": "SECONDLY"}
_WARN_EVERY = 60.0
_last_warning = [-_WARN_EVERY]


@dataclass(frozen=True)
class Plan:
    """How a budget of ``requests`` per ``seconds`` is cut into slots (see the module doc)."""

    requests: int
    seconds: float
    span: float  # the window plus the tolerance: no interval this long holds more
    quota: int  # requests per slot
    slot: float  # seconds per slot
    stride: int  # only every stride-th slot admits requests (2 for a budget of one)

    def next_start(self, index: int) -> float:
        """When the first admitting slot after ``index`` begins."""
        later = index + 1
        later += -later % self.stride
        return later * self.slot

    def wait_until(self, index: int, number: int) -> float | None:
        """``None`` if number ``number`` of slot ``index`` may go; else when to try again.

        The k-th request beyond the quota tries again ``ceil(k / quota)`` slots later, so
        that many waiters do not all wake for the same slot.
        """
        if number <= self.quota:
            return None
        later = min(-(-(number - self.quota) // self.quota), 8)
        start = (index + later * self.stride) * self.slot
        return start + random.random() * self.slot * 0.05  # spreads wake-ups


@functools.lru_cache(maxsize=64)
def plan_for(requests: int, seconds: float) -> Plan:
    """The slots of a budget of ``requests`` per ``seconds`` (see the module docstring)."""
    span = seconds + max(seconds / 50, 0.1)  # the window plus a tolerance (skew, latency)
    if requests < 2:
        return Plan(requests, seconds, span, quota=1, slot=span, stride=2)
    quota = max(1, requests // 22)
    slots = requests // quota  # the most slots an interval of length `span` may touch
    # A hair longer than span / (slots - 1), so that rounding can never shorten it.
    slot = span / (slots - 1) * (1 + 1e-9)
    return Plan(requests, seconds, span, quota=quota, slot=slot, stride=1)


def is_search(method: str, path: str) -> bool:
    """Whether a request goes to a CRM search endpoint (its own, lower limit)."""
    return method == "POST" and SEARCH_PATH.fullmatch(path) is not None


def _cache_failed(exc: Exception) -> None:
    now = time.monotonic()
    if now - _last_warning[0] >= _WARN_EVERY:
        _last_warning[0] = now
        logger.warning(
            "The request budget's cache (HUBSPOT_RATE_LIMIT_CACHE) failed (%s); "
            "calling HubSpot without it.",
            type(exc).__name__,
        )


def _redis_client(cache: BaseCache) -> Any:
    """The primary's client of Django's own Redis backend, made once (``None`` for any
    other backend). Django's ``RedisCache.incr()`` builds a client and sends EXISTS before
    INCR on every call: three times the CPU of the one INCR the budget needs."""
    client = getattr(cache, "_cache", None) if type(cache) is RedisCache else None
    get_client = getattr(client, "get_client", None)  # Django 4.0+; else the portable path
    return get_client(write=True) if get_client is not None else None


class Budget:
    """The shared budgets of the current settings: all portals, API and search."""

    def __init__(
        self,
        cache: BaseCache,
        api: tuple[int, float] | None,
        search: tuple[int, float] | None,
    ) -> None:
        self.cache = cache
        self._redis = _redis_client(cache)
        self.plans: dict[str, Plan] = {}
        if api is not None:
            self.plans["api"] = plan_for(*api)
        if search is not None:
            self.plans["search"] = plan_for(*search)

    @classmethod
    def from_settings(cls) -> Budget:
        return cls(
            caches[app_settings.RATE_LIMIT_CACHE],
            app_settings.RATE_LIMIT,
            app_settings.SEARCH_RATE_LIMIT,
        )

    def kinds(self, search: bool) -> tuple[str, ...]:
        """The budgets a request draws on: search requests count against both."""
        return tuple(k for k in (("search", "api") if search else ("api",)) if k in self.plans)

    def _key(self, kind: str, portal_id: int, index: int) -> str:
        plan = self.plans[kind]
        return (
            f"hubspot_connect:budget:{kind}:{plan.requests}:{plan.seconds:g}:{portal_id}:{index}"
        )

    def _timeout(self, kind: str) -> int:
        plan = self.plans[kind]
        return math.ceil(plan.slot * plan.stride) + 2

    # -- sync ----------------------------------------------------------------------------

    def take(self, kind: str, portal_id: int, now: float) -> float | None:
        """Try to take a place now: ``None`` if taken, else the time to try again."""
        plan = self.plans[kind]
        index = math.floor(now / plan.slot)
        if index % plan.stride:
            return plan.next_start(index)
        key = self._key(kind, portal_id, index)
        try:
            number = self._count(key, self._timeout(kind))
        except Exception as exc:  # the cache is down: send unmetered rather than fail
            _cache_failed(exc)
            return None
        return plan.wait_until(index, number)

    def _count(self, key: str, timeout: int) -> int:
        """Take the next number of a slot's counter (one atomic increment)."""
        if self._redis is not None:  # Django's Redis backend: INCR and EXPIRE, one round trip
            full = self.cache.make_and_validate_key(key)
            pipeline = self._redis.pipeline(transaction=False)
            pipeline.incr(full)
            pipeline.expire(full, timeout)
            return int(pipeline.execute()[0])
        try:
            return self.cache.incr(key)
        except ValueError:  # the slot's first request
            return 1 if self.cache.add(key, 1, timeout) else self.cache.incr(key)

    def acquire(
        self,
        portal_id: int,
        *,
        search: bool = False,
        deadline: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Wait for a place in every budget the request draws on, until ``deadline``
        (``time.monotonic()``); past it, raise :class:`HubSpotRateLimited`."""
        for kind in self.kinds(search):
            while (retry_at := self.take(kind, portal_id, time.time())) is not None:
                sleep(self._delay(kind, portal_id, retry_at, deadline))

    # -- async ---------------------------------------------------------------------------

    async def atake(self, kind: str, portal_id: int, now: float) -> float | None:
        """:meth:`take` through the cache's async API."""
        plan = self.plans[kind]
        index = math.floor(now / plan.slot)
        if index % plan.stride:
            return plan.next_start(index)
        key = self._key(kind, portal_id, index)
        try:
            try:
                number = await self.cache.aincr(key)
            except ValueError:
                added = await self.cache.aadd(key, 1, self._timeout(kind))
                number = 1 if added else await self.cache.aincr(key)
        except Exception as exc:
            _cache_failed(exc)
            return None
        return plan.wait_until(index, number)

    async def aacquire(
        self,
        portal_id: int,
        *,
        search: bool = False,
        deadline: float,
        sleep: Callable[[float], Awaitable[Any]],
    ) -> None:
        """:meth:`acquire` for ``async def`` code."""
        for kind in self.kinds(search):
            while (retry_at := await self.atake(kind, portal_id, time.time())) is not None:
                await sleep(self._delay(kind, portal_id, retry_at, deadline))

    # -- shared decisions ----------------------------------------------------------------

    def _delay(self, kind: str, portal_id: int, retry_at: float, deadline: float) -> float:
        delay = max(0.0, retry_at - time.time())
        if time.monotonic() + delay > deadline:
            plan = self.plans[kind]
            raise HubSpotRateLimited(
                f"Portal {portal_id}: no place in the shared request budget "
                f"({plan.requests} requests per {plan.seconds:g} s) within the allowed wait.",
                policy=POLICIES[kind],
                retry_after=delay,
                http_status=None,
            )
        return delay

    def _blocked(self, portal_id: int, policy: str, seconds: float) -> dict[str, int]:
        kind = "search" if policy == "SECONDLY" else "api"
        plan = self.plans.get(kind)
        if plan is None or seconds <= 0:
            return {}
        first = math.floor(time.time() / plan.slot)
        last = min(math.floor((time.time() + seconds) / plan.slot), first + 200)
        return {self._key(kind, portal_id, index): plan.quota for index in range(first, last + 1)}

    def block(self, portal_id: int, policy: str, seconds: float) -> None:
        """Fill the budget's slots for the next ``seconds`` after HubSpot answered 429 with
        ``policy``, so that every process waits, not only the one that saw it (one
        ``set_many``)."""
        if keys := self._blocked(portal_id, policy, seconds):
            try:
                self.cache.set_many(keys, math.ceil(seconds) + 3)
            except Exception as exc:
                _cache_failed(exc)

    async def ablock(self, portal_id: int, policy: str, seconds: float) -> None:
        """:meth:`block` through the cache's async API."""
        if keys := self._blocked(portal_id, policy, seconds):
            try:
                await self.cache.aset_many(keys, math.ceil(seconds) + 3)
            except Exception as exc:
                _cache_failed(exc)
