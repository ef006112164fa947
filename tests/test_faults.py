"""HubSpot misbehaving at random, reproducibly: the tokens we keep stay whole and ours.

A seeded plan decides, per refresh token and attempt, how FakeHubSpot answers the token
endpoint. The plan is keyed by (seed, refresh token, attempt), not by call order, so it
is the same however the batch interleaves its work. From the plan the test predicts each
connection's outcome, then checks the rows and the summary against it.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from hubspot_connect.batch import refresh_expiring_tokens
from hubspot_connect.exceptions import HubSpotOAuthError, HubSpotUnavailable, NeedsReauth
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.testing import FakeHubSpot, Fault
from hubspot_connect.tokens import get_access_token
from tests.hardening.recorder import HandleRecorder

SEEDS = range(20)
CONNECTIONS = 20
FIRST_PORTAL = 5_000_000

# (name, fault or None for a clean answer, what the app makes of it)
RETRY, FAIL, REAUTH, OK = "retry", "fail", "reauth", "ok"
MENU: list[tuple[str, Fault | None, str]] = [
    ("ok", None, OK),
    ("500", Fault("status", status=500), RETRY),
    ("502", Fault("status", status=502), RETRY),
    ("503", Fault("status", status=503), RETRY),
    ("429", Fault("status", status=429), RETRY),
    ("429+retry-after", Fault("status", status=429, retry_after=7), RETRY),
    ("timeout", Fault("timeout"), RETRY),
    ("reset", Fault("reset"), RETRY),
    ("truncated", Fault("truncated"), RETRY),
    ("non-json", Fault("non_json", status=502), RETRY),
    ("missing-fields", Fault("missing_fields"), RETRY),
    ("invalid_grant", Fault("invalid_grant"), REAUTH),
    ("403", Fault("status", status=403), FAIL),
]
# Clean answers are common enough that most connections end somewhere interesting.
WEIGHTS = [6] + [1] * (len(MENU) - 1)


@dataclass
class Plan:
    """The seeded fault plan, with a log of what it decided."""

    seed: int
    recorder: HandleRecorder
    attempts: dict[str, int] = field(default_factory=dict)
    decided: list[tuple[str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    local: threading.local = field(default_factory=threading.local)

    def choice(self, token: str, attempt: int) -> tuple[str, Fault | None, str]:
        rng = random.Random(f"{self.seed}:{token}:{attempt}")
        return rng.choices(MENU, weights=WEIGHTS)[0]

    def __call__(self, endpoint: str) -> Fault | None:
        if endpoint != "token":
            return None
        token = self.recorder.current_form.get("refresh_token", "")
        with self.lock:
            attempt = self.attempts.get(token, 0)
            self.attempts[token] = attempt + 1
        name, fault, _ = self.choice(token, attempt)
        with self.lock:
            self.decided.append((token, attempt, name))
        self.local.last = fault
        return fault

    def expect(self, token: str, retries: int) -> tuple[str, int, int]:
        """(outcome, refresh_failures, calls) the plan leads to for one connection."""
        failures = 0
        for attempt in range(retries + 1):
            _, _, effect = self.choice(token, attempt)
            if effect == OK:
                return "refreshed", 0, attempt + 1
            failures += 1
            if effect == REAUTH:
                return "needs re-auth", failures, attempt + 1
            if effect == FAIL:
                return "failed", failures, attempt + 1
        return "failed", failures, retries + 1


@pytest.fixture
def recorder(fake_hubspot: FakeHubSpot) -> HandleRecorder:
    return HandleRecorder(fake_hubspot).install()


@pytest.fixture
def portfolio(db: None, fake_hubspot: FakeHubSpot) -> Callable[[int], dict[int, tuple[str, str]]]:
    """``CONNECTIONS`` rows due for refresh; returns portal -> (access, refresh) as stored."""

    def make(seed: int) -> dict[int, tuple[str, str]]:
        HubSpotConnection.objects.all().delete()
        stored = {}
        now = timezone.now()
        for index in range(CONNECTIONS):
            portal = FIRST_PORTAL + seed * 100 + index
            # Half still valid (refresh is early), half already expired.
            lifetime = 120 if index % 2 else -60
            issued = fake_hubspot.issue_tokens(portal, ["oauth"], expires_in=lifetime)
            HubSpotConnection.objects.create(
                portal_id=portal,
                access_token=issued["access_token"],
                refresh_token=issued["refresh_token"],
                expires_at=now + timedelta(seconds=lifetime),
                scopes=["oauth"],
            )
            stored[portal] = (issued["access_token"], issued["refresh_token"])
        return stored

    return make


def assert_tokens_whole(fake: FakeHubSpot, before: dict[int, tuple[str, str]]) -> dict[int, str]:
    """Every row holds its old tokens or a complete set HubSpot issued for its portal.

    Returns portal -> "old" or "new".
    """
    rows = {row.portal_id: row for row in HubSpotConnection.objects.all()}
    assert set(rows) == set(before)
    everyone_elses = {
        token for portal, pair in before.items() for token in pair
    }  # filled per portal below
    kinds = {}
    for portal, row in rows.items():
        old_access, old_refresh = before[portal]
        assert row.access_token, f"portal {portal}: empty access token"
        assert row.refresh_token, f"portal {portal}: empty refresh token"
        assert row.lease_expires_at is None, f"portal {portal}: lease left behind"
        assert fake.access_token_portal(row.access_token) == portal, "foreign access token"
        assert fake.refresh_token_portal(row.refresh_token) == portal, "foreign refresh token"
        others = everyone_elses - set(before[portal])
        assert row.access_token not in others
        assert row.refresh_token not in others
        if (row.access_token, row.refresh_token) == (old_access, old_refresh):
            kinds[portal] = "old"
        else:
            assert fake.is_issued_access_token(row.access_token)
            assert fake.is_live_refresh_token(row.refresh_token)
            assert row.access_token != old_access, "new refresh token with an old access token"
            assert row.expires_at is not None
            assert row.expires_at > timezone.now()
            kinds[portal] = "new"
        for token in (row.access_token, row.refresh_token):
            assert token not in row.last_error
    return kinds


def check_run(
    plan: Plan,
    fake: FakeHubSpot,
    before: dict[int, tuple[str, str]],
    retries: int,
    counts: dict[str, int],
) -> None:
    kinds = assert_tokens_whole(fake, before)
    expected = {"refreshed": 0, "needs re-auth": 0, "failed": 0, "skipped": 0}
    for portal, (_, old_refresh) in before.items():
        outcome, failures, calls = plan.expect(old_refresh, retries)
        expected[outcome] += 1
        row = HubSpotConnection.objects.get(portal_id=portal)
        assert kinds[portal] == ("new" if outcome == "refreshed" else "old"), (portal, outcome)
        assert row.status == ("needs_reauth" if outcome == "needs re-auth" else "active")
        assert row.refresh_failures == failures, (portal, outcome)
        assert bool(row.last_error) == (outcome != "refreshed")
        # Exactly one call per attempt the plan played out: no double refresh, no extra retry.
        assert plan.attempts.get(old_refresh, 0) == calls, (portal, outcome)
    assert counts == expected, plan.seed


@pytest.fixture
def plan_for(
    fake_hubspot: FakeHubSpot, recorder: HandleRecorder
) -> Iterator[Callable[[int], Plan]]:
    def make(seed: int) -> Plan:
        plan = Plan(seed, recorder)
        fake_hubspot.fault_plan = plan
        return plan

    yield make
    fake_hubspot.fault_plan = None


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_refresh_under_random_faults(
    seed: int,
    fake_hubspot: FakeHubSpot,
    portfolio: Callable[[int], dict[int, tuple[str, str]]],
    plan_for: Callable[[int], Plan],
) -> None:
    # Odd seeds: HubSpot hands out a new refresh token on every refresh.
    fake_hubspot.rotate_refresh_tokens = bool(seed % 2)
    before = portfolio(seed)
    plan = plan_for(seed)
    retries = 3
    sleeps: list[tuple[float, Fault | None]] = []

    def sleep(seconds: float) -> None:
        sleeps.append((seconds, getattr(plan.local, "last", None)))

    summary = refresh_expiring_tokens(
        within=timedelta(minutes=15), retries=retries, concurrency=1, sleep=sleep
    )
    counts = {
        "refreshed": summary.refreshed,
        "needs re-auth": summary.needs_reauth,
        "failed": summary.failed,
        "skipped": summary.skipped,
    }
    check_run(plan, fake_hubspot, before, retries, counts)
    assert summary.awaiting_reauth == counts["needs re-auth"]
    assert summary.ok == (counts["failed"] == counts["needs re-auth"] == 0)
    # One backoff per retried attempt, never shorter than HubSpot's Retry-After.
    retried = sum(1 for _, _, name in plan.decided if name != "ok") - sum(
        1
        for _, (_, old_refresh) in before.items()
        if plan.expect(old_refresh, retries)[0] != "refreshed"
    )
    assert len(sleeps) == retried
    for seconds, fault in sleeps:
        assert seconds >= 0
        if fault is not None and fault.retry_after is not None:
            assert seconds >= fault.retry_after
    # Nothing left stuck: the next run refreshes what is left, and only that.
    fake_hubspot.fault_plan = None
    again = refresh_expiring_tokens(within=timedelta(minutes=15), concurrency=1, sleep=sleep)
    assert again.refreshed == counts["failed"], str(again)
    assert again.failed == again.needs_reauth == 0


SUMMARY = re.compile(
    r"refreshed (\d+), skipped (\d+) \(refreshed elsewhere\), needs re-auth (\d+), failed (\d+)"
)


@pytest.mark.parametrize("seed", range(100, 105))
def test_refresh_command_under_random_faults(
    seed: int,
    fake_hubspot: FakeHubSpot,
    portfolio: Callable[[int], dict[int, tuple[str, str]]],
    plan_for: Callable[[int], Plan],
) -> None:
    before = portfolio(seed)
    plan = plan_for(seed)
    stdout, stderr = StringIO(), StringIO()
    exit_code = 0
    try:
        # --retries 0: the command's backoff sleeps for real, so no retries here.
        call_command(
            "refresh_hubspot_tokens",
            "--retries",
            "0",
            "--concurrency",
            "1",
            stdout=stdout,
            stderr=stderr,
        )
    except SystemExit as exc:
        exit_code = int(exc.code or 0)
    found = SUMMARY.search(stdout.getvalue())
    assert found, stdout.getvalue()
    refreshed, skipped, reauth, failed = map(int, found.groups())
    counts = {
        "refreshed": refreshed,
        "needs re-auth": reauth,
        "failed": failed,
        "skipped": skipped,
    }
    check_run(plan, fake_hubspot, before, 0, counts)
    assert exit_code == (1 if failed or reauth else 0)
    output = stdout.getvalue() + stderr.getvalue()
    for pair in before.values():
        for token in pair:
            assert token not in output


@pytest.mark.parametrize("seed", range(200, 205))
def test_get_access_token_under_random_faults(
    seed: int,
    fake_hubspot: FakeHubSpot,
    portfolio: Callable[[int], dict[int, tuple[str, str]]],
    plan_for: Callable[[int], Plan],
) -> None:
    before = portfolio(seed)
    plan = plan_for(seed)
    counts = {"refreshed": 0, "needs re-auth": 0, "failed": 0, "skipped": 0}
    for portal, (old_access, old_refresh) in before.items():
        outcome, _, _ = plan.expect(old_refresh, 0)
        expired = HubSpotConnection.objects.get(portal_id=portal).is_expired()
        try:
            token = get_access_token(portal)
        except NeedsReauth:
            assert outcome == "needs re-auth"
            counts["needs re-auth"] += 1
            continue
        except (HubSpotUnavailable, HubSpotOAuthError):
            assert outcome == "failed"
            assert expired
            counts["failed"] += 1
            continue
        row = HubSpotConnection.objects.get(portal_id=portal)
        assert token == row.access_token
        assert fake_hubspot.access_token_portal(token) == portal
        if outcome == "refreshed":
            assert token != old_access
            counts["refreshed"] += 1
        else:
            # Transient failure on a token that has not expired: the stored one, once.
            assert outcome == "failed"
            assert not expired
            assert token == old_access
            counts["failed"] += 1
    check_run(plan, fake_hubspot, before, 0, counts)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("seed", [300, 301])
def test_threaded_batch_under_random_faults(
    seed: int,
    fake_hubspot: FakeHubSpot,
    portfolio: Callable[[int], dict[int, tuple[str, str]]],
    plan_for: Callable[[int], Plan],
) -> None:
    """Four threads, each with its own database connection (PostgreSQL only)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("threads need a database with real concurrent connections")
    fake_hubspot.rotate_refresh_tokens = bool(seed % 2)
    before = portfolio(seed)
    plan = plan_for(seed)
    summary = refresh_expiring_tokens(
        within=timedelta(minutes=15), retries=2, concurrency=4, sleep=lambda seconds: None
    )
    counts = {
        "refreshed": summary.refreshed,
        "needs re-auth": summary.needs_reauth,
        "failed": summary.failed,
        "skipped": summary.skipped,
    }
    check_run(plan, fake_hubspot, before, 2, counts)


@pytest.mark.parametrize("endpoint", ["token", "introspect"])
@pytest.mark.parametrize(("name", "fault", "effect"), MENU[1:], ids=[m[0] for m in MENU[1:]])
def test_connect_under_each_fault_stores_all_or_nothing(
    endpoint: str,
    name: str,
    fault: Fault,
    effect: str,
    connect_portal_via_views: Callable[..., Any],
    fake_hubspot: FakeHubSpot,
) -> None:
    fake_hubspot.fail(
        fault.kind, status=fault.status, retry_after=fault.retry_after, endpoint=endpoint
    )
    response = connect_portal_via_views(portal_id=87654321)
    rows = list(HubSpotConnection.objects.all())
    if endpoint == "token":
        # No tokens, nothing stored, and a page that says so (never a 500).
        assert response.status_code in (400, 502), name
        assert rows == []
        return
    # The token response names the portal, so a failed introspection only costs details.
    assert response.status_code == 302, name
    [row] = rows
    assert fake_hubspot.access_token_portal(row.access_token) == 87654321
    assert fake_hubspot.is_live_refresh_token(row.refresh_token)
    assert row.status == "active"
    assert row.expires_at is not None
