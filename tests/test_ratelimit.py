"""hubspot_connect.ratelimit: the request budget shared through Django's cache.

The unit tests use a local-memory cache of their own; the multi-process test runs
several processes with threads against FakeHubSpotServer, sharing the budget through a
real Redis on 127.0.0.1:6379 (skipped when none answers), and asks the fake, which counts
every request as HubSpot would, whether any window ever held more than the budget.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from hubspot_connect.exceptions import HubSpotRateLimited
from hubspot_connect.ratelimit import Budget, is_search, plan_for
from hubspot_connect.testing import FakeHubSpotServer
from hubspot_connect.testing.api import RateLimits

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/0"
PORTAL = 12345678


@pytest.fixture
def cache() -> LocMemCache:
    return LocMemCache(f"budget-{uuid.uuid4()}", {})


def redis_cache() -> RedisCache:
    return RedisCache(REDIS_URL, {"KEY_PREFIX": f"hubspot-test-{uuid.uuid4().hex[:8]}"})


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


needs_redis = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")


# -- the plan: never more than the budget in any window --------------------------------------


BUDGETS = [(110, 10), (5, 1), (1, 1), (2, 1), (3, 5), (100, 10), (190, 10), (23, 1), (1000, 60)]


@pytest.mark.parametrize(("requests", "seconds"), BUDGETS)
def test_the_plan_never_admits_more_than_the_budget_in_any_window(
    requests: int, seconds: float
) -> None:
    plan = plan_for(requests, seconds)
    # The worst case: every admitting slot full, its requests at its very edges.
    times: list[float] = []
    for index in range(0, 6 * math.ceil(seconds / plan.slot) + 12):
        if index % plan.stride == 0:
            start, end = index * plan.slot, (index + 1) * plan.slot - 1e-6
            times += [start] * (plan.quota // 2) + [end] * (plan.quota - plan.quota // 2)
    window = plan.span  # the window plus the tolerance the plan promises
    assert window >= seconds * 1.02
    most = max(
        sum(1 for t in times if begin <= t < begin + window)
        for begin in times + [t - window + 1e-6 for t in times]
    )
    assert most <= requests


@pytest.mark.parametrize(("requests", "seconds"), [(110, 10), (100, 10), (190, 10), (1000, 60)])
def test_the_plan_lets_most_of_the_budget_through(requests: int, seconds: float) -> None:
    plan = plan_for(requests, seconds)
    per_window = plan.quota / (plan.slot * plan.stride) * seconds
    assert 0.9 * requests <= per_window <= requests


def test_hubspots_budget_allows_bursts_of_five() -> None:
    plan = plan_for(110, 10)
    assert (plan.quota, round(plan.slot, 3)) == (5, 0.486)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/crm/v3/objects/contacts/search", True),
        ("POST", "/crm/objects/2026-03/deals/search", True),
        ("POST", "/crm/v3/objects/contacts", False),
        ("GET", "/crm/v3/objects/contacts/search", False),
        ("POST", "/cms/v3/search", False),
    ],
)
def test_search_endpoints(method: str, path: str, expected: bool) -> None:
    assert is_search(method, path) is expected


# -- taking places ---------------------------------------------------------------------------


def test_each_slot_admits_its_quota_then_says_when_to_come_back(cache: LocMemCache) -> None:
    budget = Budget(cache, (110, 10), None)
    plan = budget.plans["api"]
    now = 1000 * plan.slot + plan.slot / 2
    assert [budget.take("api", PORTAL, now) for _ in range(plan.quota)] == [None] * 5
    retry_at = budget.take("api", PORTAL, now)
    assert retry_at is not None
    assert 1001 * plan.slot <= retry_at < 1002 * plan.slot
    # The next slot admits again; other portals have budgets of their own.
    assert budget.take("api", PORTAL, 1001 * plan.slot) is None
    assert budget.take("api", 87654321, now) is None


def test_many_waiters_are_spread_over_later_slots(cache: LocMemCache) -> None:
    budget = Budget(cache, (110, 10), None)
    plan = budget.plans["api"]
    now = 500 * plan.slot
    retries = [budget.take("api", PORTAL, now) for _ in range(30)][plan.quota :]
    slots = {math.floor(t / plan.slot) for t in retries if t is not None}
    assert len(slots) > 1
    assert min(slots) == 501


def test_a_budget_of_one_request_uses_every_other_slot(cache: LocMemCache) -> None:
    budget = Budget(cache, (1, 1), None)
    plan = budget.plans["api"]
    assert budget.take("api", PORTAL, 11 * plan.slot) == 12 * plan.slot  # an odd slot
    assert budget.take("api", PORTAL, 12 * plan.slot) is None
    assert budget.take("api", PORTAL, 12 * plan.slot) is not None
    odd = async_to_sync(budget.atake)("api", PORTAL, 13 * plan.slot)
    assert odd == 14 * plan.slot


def test_search_requests_draw_on_both_budgets(cache: LocMemCache) -> None:
    budget = Budget(cache, (110, 10), (5, 1))
    assert budget.kinds(search=True) == ("search", "api")
    assert budget.kinds(search=False) == ("api",)
    assert Budget(cache, None, None).kinds(search=True) == ()


def test_acquire_waits_for_a_place(cache: LocMemCache) -> None:
    budget = Budget(cache, (4, 0.5), None)
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        time.sleep(seconds)

    deadline = time.monotonic() + 10
    for _ in range(4):
        budget.acquire(PORTAL, deadline=deadline, sleep=nap)
    assert naps, "four requests in a row must wait for the next slots"
    assert all(0 <= nap <= budget.plans["api"].slot * 1.1 for nap in naps)


def test_acquire_raises_when_the_wait_would_pass_the_deadline(cache: LocMemCache) -> None:
    budget = Budget(cache, (2, 10), None)  # one request per 10.2 s slot
    budget.acquire(PORTAL, deadline=time.monotonic())  # a free place: no wait needed
    with pytest.raises(HubSpotRateLimited) as caught:
        budget.acquire(PORTAL, deadline=time.monotonic())
    assert caught.value.policy == "TEN_SECONDLY_ROLLING"
    assert caught.value.http_status is None
    assert 0 < (caught.value.retry_after or 0) <= budget.plans["api"].slot
    assert "2 requests per 10 s" in str(caught.value)


def test_block_fills_the_coming_slots(cache: LocMemCache) -> None:
    budget = Budget(cache, (110, 10), (5, 1))
    budget.block(PORTAL, "TEN_SECONDLY_ROLLING", 2.0)
    assert budget.take("api", PORTAL, time.time()) is not None
    assert budget.take("search", PORTAL, time.time()) is None  # only the policy HubSpot named
    budget.block(87654321, "SECONDLY", 0)  # nothing to wait: nothing blocked
    assert budget.take("search", 87654321, time.time()) is None


def test_a_dummy_cache_limits_nothing() -> None:
    budget = Budget(DummyCache("dummy", {}), (2, 10), None)
    assert [budget.take("api", PORTAL, 100.0) for _ in range(5)] == [None] * 5


def test_a_failing_cache_lets_requests_through_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hubspot_connect import ratelimit

    ratelimit._last_warning[0] = -ratelimit._WARN_EVERY  # a warning is due
    down = RedisCache("redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 0.2}})
    budget = Budget(down, (2, 10), None)
    with caplog.at_level(logging.WARNING, logger="hubspot_connect"):
        assert budget.take("api", PORTAL, time.time()) is None
        assert budget.take("api", PORTAL, time.time()) is None
        budget.block(PORTAL, "TEN_SECONDLY_ROLLING", 1)
    warnings = [r for r in caplog.records if "HUBSPOT_RATE_LIMIT_CACHE" in r.getMessage()]
    assert len(warnings) == 1
    assert "ConnectionError" in warnings[0].getMessage()

    async def run() -> float | None:
        ratelimit._last_warning[0] = -ratelimit._WARN_EVERY
        await budget.ablock(PORTAL, "TEN_SECONDLY_ROLLING", 1)
        return await budget.atake("api", PORTAL, time.time())

    with caplog.at_level(logging.WARNING, logger="hubspot_connect"):
        assert async_to_sync(run)() is None
    assert len([r for r in caplog.records if "HUBSPOT_RATE_LIMIT_CACHE" in r.getMessage()]) == 2


def test_the_async_api_takes_the_same_places(cache: LocMemCache) -> None:
    budget = Budget(cache, (4, 0.5), None)
    plan = budget.plans["api"]

    async def run() -> list[float | None]:
        import asyncio

        now = 100 * plan.slot
        taken = [await budget.atake("api", PORTAL, now) for _ in range(2)]
        await budget.aacquire(PORTAL, deadline=time.monotonic() + 5, sleep=asyncio.sleep)
        await budget.ablock(PORTAL, "TEN_SECONDLY_ROLLING", 1.0)
        taken.append(await budget.atake("api", PORTAL, time.time()))
        with pytest.raises(HubSpotRateLimited):
            await budget.aacquire(PORTAL, deadline=time.monotonic(), sleep=asyncio.sleep)
        return taken

    first, second, blocked = async_to_sync(run)()
    assert first is None
    assert second is not None
    assert blocked is not None


@needs_redis
def test_places_on_redis_are_unique_across_clients() -> None:
    prefix = f"hubspot-test-{uuid.uuid4().hex[:8]}"
    one = Budget(RedisCache(REDIS_URL, {"KEY_PREFIX": prefix}), (110, 10), None)
    two = Budget(RedisCache(REDIS_URL, {"KEY_PREFIX": prefix}), (110, 10), None)
    plan = one.plans["api"]
    now = math.floor(time.time() / plan.slot) * plan.slot + plan.slot / 2
    taken = [budget.take("api", PORTAL, now) for budget in (one, two) * 4]
    assert taken.count(None) == plan.quota


@needs_redis
def test_a_block_on_redis_fills_the_slots_the_fast_path_counts() -> None:
    budget = Budget(redis_cache(), (110, 10), None)
    assert budget.take("api", PORTAL, time.time()) is None
    budget.block(PORTAL, "TEN_SECONDLY_ROLLING", 1.0)
    assert budget.take("api", PORTAL, time.time()) is not None


# -- the fake's limits ------------------------------------------------------------------------


def test_the_fakes_rolling_window_counts() -> None:
    limits = RateLimits((3, 10), None)
    clock = iter([0.0, 1.0, 2.0, 3.0, 10.5, 11.0])
    answers = [limits.admit(PORTAL, lambda: next(clock), search=False) for _ in range(6)]
    assert [a.status if a else 200 for a in answers] == [200, 200, 200, 429, 200, 200]
    assert answers[3] is not None
    assert answers[3].headers["Retry-After"] == "7"
    assert limits.max_in_window(PORTAL, 10) == 4  # arrivals, the refused one included
    assert limits.refused(PORTAL) == limits.refused() == 1
    assert limits.count(PORTAL) == 6


# -- several processes on one Redis ----------------------------------------------------------


def _env(server_url: str, prefix: str, rate_limit: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)  # the children touch no database
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["DJANGO_SETTINGS_MODULE"] = "tests.budget.settings"
    env["HUBSPOT_API_BASE_URL"] = server_url
    env["BUDGET_REDIS_URL"] = REDIS_URL
    env["BUDGET_KEY_PREFIX"] = prefix
    env["BUDGET_RATE_LIMIT"] = json.dumps(rate_limit)
    return env


def _hammer(
    server: FakeHubSpotServer,
    token: str,
    *,
    processes: int,
    threads: int,
    seconds: float,
    rate_limit: Any,
) -> tuple[float, list[dict[str, Any]]]:
    start = time.time() + 3  # every child has set Django up by then
    env = _env(server.url, f"hubspot-test-{uuid.uuid4().hex[:8]}", rate_limit)
    args = ["hammer", str(PORTAL), token, str(threads), str(seconds), str(start)]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.budget.worker", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=seconds + 60)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return start, results


@pytest.fixture
def server() -> Iterator[FakeHubSpotServer]:
    with FakeHubSpotServer() as server:
        server.fake.requests = _Discard()
        yield server


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: Any) -> None:
        pass


@needs_redis
@pytest.mark.slow
def test_processes_sharing_redis_never_exceed_the_budget(server: FakeHubSpotServer) -> None:
    # HubSpot's algorithm at a tenth of its scale (20 requests per second), so the test
    # sees many windows in a few seconds; benchmarks/api_calls.py runs 110 per 10 s.
    server.fake.limits = RateLimits((20, 1), None)
    token = server.fake.issue_tokens(PORTAL, ["oauth", "crm.objects.contacts.read"])
    seconds = 4.0
    start, results = _hammer(
        server,
        token["access_token"],
        processes=3,
        threads=4,
        seconds=seconds,
        rate_limit=[20, 1],
    )
    statuses: dict[str, int] = {}
    for result in results:
        assert result["errors"] == []
        for status, count in result["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    assert set(statuses) == {"200"}
    assert server.fake.limits.refused() == 0
    assert server.fake.limits.max_in_window(PORTAL, 1.0) <= 20
    # Throughput once every child runs (after the first second): close to the budget.
    arrivals = server.fake.limits.arrivals[(PORTAL, "api")]
    steady = [t for t in arrivals if start + 1 <= t < start + seconds]
    # The plan's ceiling at this scale is 86 % (1 request per 57.9 ms slot).
    assert len(steady) / (seconds - 1) >= 0.75 * 20


@needs_redis
@pytest.mark.slow
def test_without_the_budget_the_same_load_meets_429s(server: FakeHubSpotServer) -> None:
    """The control: the fake's limit is real, and only the budget kept the test above under it."""
    server.fake.limits = RateLimits((20, 1), None)
    token = server.fake.issue_tokens(PORTAL, ["oauth", "crm.objects.contacts.read"])
    _hammer(server, token["access_token"], processes=2, threads=3, seconds=1.5, rate_limit=None)
    assert server.fake.limits.refused() > 0
    assert server.fake.limits.max_in_window(PORTAL, 1.0) > 20
