"""hubspot_connect.retries: the decisions every session applies after an answer or error."""

from __future__ import annotations

import json

import pytest

from hubspot_connect.exceptions import HubSpotRateLimited
from hubspot_connect.retries import (
    MAX_RATE_LIMIT_RETRIES,
    MAX_TRANSIENT_RETRIES,
    RETURN,
    Retries,
    policy_name,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def retries(method: str = "GET", *, max_wait: float = 30, **options: object) -> Retries:
    return Retries(method, f"{method} /x", max_wait=max_wait, clock=Clock(), **options)  # type: ignore[arg-type]


def limited(policy: str) -> bytes:
    return json.dumps(
        {"status": "error", "errorType": "RATE_LIMIT", "policyName": policy}
    ).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (limited("SECONDLY"), "SECONDLY"),
        (b"<html>Too Many Requests</html>", ""),
        (b"[1]", ""),
        (b'{"policyName": 5}', ""),
        (b"", ""),
    ],
)
def test_policy_name(body: bytes, expected: str) -> None:
    assert policy_name(body) == expected


def test_a_429_waits_retry_after_or_the_policys_window() -> None:
    decide = retries()
    secondly = decide.after_status(429, {}, limited("SECONDLY"))
    assert (secondly.kind, secondly.policy) == ("send", "SECONDLY")
    assert 1.0 <= secondly.delay <= 1.1
    rolling = decide.after_status(429, {}, limited("TEN_SECONDLY_ROLLING"))
    assert 10.0 <= rolling.delay <= 11.0
    told = decide.after_status(429, {"Retry-After": "3"}, limited("TEN_SECONDLY_ROLLING"))
    assert 3.0 <= told.delay <= 3.3
    unnamed = decide.after_status(429, {}, b"")
    assert (unnamed.policy, unnamed.delay >= 10) == ("TEN_SECONDLY_ROLLING", True)


def test_a_429_is_retried_for_any_method_but_not_forever() -> None:
    decide = retries("POST")
    for _ in range(MAX_RATE_LIMIT_RETRIES):
        assert decide.after_status(429, {"Retry-After": "0"}, b"").kind == "send"
    with pytest.raises(HubSpotRateLimited):
        decide.after_status(429, {"Retry-After": "0"}, b"")


def test_the_daily_limit_raises_at_once() -> None:
    with pytest.raises(HubSpotRateLimited) as caught:
        retries(max_wait=3600).after_status(429, {"Retry-After": "60"}, limited("DAILY"))
    assert (caught.value.policy, caught.value.retry_after) == ("DAILY", 60)


def test_waits_come_out_of_one_max_wait() -> None:
    decide = retries(max_wait=12)
    decide.after_status(429, {}, limited("TEN_SECONDLY_ROLLING"))
    decide.clock.now += 11.9  # type: ignore[attr-defined]
    with pytest.raises(HubSpotRateLimited) as caught:
        decide.after_status(429, {}, limited("SECONDLY"))
    assert caught.value.policy == "SECONDLY"
    assert decide.remaining() == pytest.approx(0.1)
    assert decide.after_status(503, {}) is RETURN  # no time left for a backoff either


def test_gateway_errors_back_off_exponentially_with_jitter() -> None:
    decide = retries(backoff=1.0)
    delays = [decide.after_status(503, {}).delay for _ in range(MAX_TRANSIENT_RETRIES)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert decide.after_status(502, {}) is RETURN
    assert decide.after_error() is None


def test_retry_after_on_a_503_is_honoured() -> None:
    assert retries().after_status(503, {"Retry-After": "7"}).delay == 7


@pytest.mark.parametrize(
    ("method", "retry", "expected"),
    [
        ("GET", None, True),
        ("delete", None, True),
        ("PUT", None, True),
        ("POST", None, False),
        ("PATCH", None, False),
        ("POST", True, True),
        ("GET", False, False),
    ],
)
def test_which_methods_are_sent_again(method: str, retry: bool | None, expected: bool) -> None:
    decide = retries(method, retry=retry)
    assert (decide.after_error() is not None) is expected
    assert (decide.after_status(504, {}) is not RETURN) is expected


def test_a_401_asks_for_one_refresh() -> None:
    decide = retries()
    first = decide.after_status(401, {})
    assert (first.kind, first.refresh, first.delay) == ("send", True, 0)
    assert decide.after_status(401, {}) is RETURN


@pytest.mark.parametrize("status", [200, 204, 400, 403, 404, 500])
def test_other_answers_go_back_to_the_caller(status: int) -> None:
    assert retries().after_status(status, {}) is RETURN
