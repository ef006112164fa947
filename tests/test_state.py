"""The OAuth state: random, bound to one session, single use, short lived, several at once."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache
from django.http import HttpRequest
from django.test import RequestFactory, override_settings

from hubspot_connect import state as state_module
from hubspot_connect.exceptions import StateError
from hubspot_connect.state import (
    MAX_NEXT_LENGTH,
    MAX_PENDING,
    SESSION_KEY,
    PendingFlow,
    consume_state,
    issue_state,
    safe_next_url,
    used_state_key,
)

pytestmark = pytest.mark.django_db
REDIRECT = "https://testserver/hubspot/callback/"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Controls the clock the state module reads (only that module's ``time``)."""
    fake = Clock()
    monkeypatch.setattr(state_module, "time", SimpleNamespace(time=fake.time))
    return fake


def make_request(session: SessionStore | None = None, *, secure: bool = False) -> HttpRequest:
    request = RequestFactory().get("/hubspot/connect/", secure=secure)
    request.session = session if session is not None else SessionStore()
    return request


def test_state_is_256_bit_url_safe_and_unique():
    request = make_request()
    states = {issue_state(request, redirect_uri=REDIRECT) for _ in range(MAX_PENDING)}
    assert len(states) == MAX_PENDING
    for value in states:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)
        assert len(base64.urlsafe_b64decode(value + "=")) == 32


def test_a_flow_returns_its_next_url_and_redirect_uri(clock):
    request = make_request()
    value = issue_state(request, redirect_uri=REDIRECT, next_url="/reports/?tab=hubspot")
    assert consume_state(request, value) == PendingFlow(
        next_url="/reports/?tab=hubspot", redirect_uri=REDIRECT, created_at=clock.now
    )


def test_two_tabs_both_complete_in_any_order():
    request = make_request()
    first = issue_state(request, redirect_uri=REDIRECT, next_url="/one/")
    second = issue_state(request, redirect_uri="https://other.example/cb/", next_url="/two/")
    assert consume_state(request, second).next_url == "/two/"
    flow = consume_state(request, first)
    assert (flow.next_url, flow.redirect_uri) == ("/one/", REDIRECT)


def test_pending_flows_survive_a_session_round_trip():
    session = SessionStore()
    value = issue_state(make_request(session), redirect_uri=REDIRECT, next_url="/x/")
    session.save()
    reloaded = SessionStore(session_key=session.session_key)
    assert consume_state(make_request(reloaded), value).next_url == "/x/"


def test_a_state_is_single_use():
    request = make_request()
    value = issue_state(request, redirect_uri=REDIRECT)
    consume_state(request, value)
    with pytest.raises(StateError, match="already used"):
        consume_state(request, value)


@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_state_is_refused(value):
    request = make_request()
    issue_state(request, redirect_uri=REDIRECT)
    with pytest.raises(StateError, match="no state parameter"):
        consume_state(request, value)
    assert len(request.session[SESSION_KEY]) == 1  # the pending flow is untouched


def test_an_unknown_or_altered_state_is_refused():
    request = make_request()
    value = issue_state(request, redirect_uri=REDIRECT)
    for forged in (value[:-1], value + "A", value.upper(), "x" * 43):
        with pytest.raises(StateError):
            consume_state(request, forged)
    assert consume_state(request, value).redirect_uri == REDIRECT


def test_a_state_from_another_session_is_refused():
    mine, theirs = make_request(), make_request()
    value = issue_state(theirs, redirect_uri=REDIRECT)
    with pytest.raises(StateError, match="browser session"):
        consume_state(mine, value)
    assert consume_state(theirs, value).redirect_uri == REDIRECT


@override_settings(HUBSPOT_STATE_MAX_AGE=60)
def test_a_state_expires_after_state_max_age(clock):
    request = make_request()
    on_time = issue_state(request, redirect_uri=REDIRECT)
    late = issue_state(request, redirect_uri=REDIRECT)
    clock.now += 60
    assert consume_state(request, on_time).redirect_uri == REDIRECT
    clock.now += 1
    with pytest.raises(StateError, match="expired"):
        consume_state(request, late)
    # An expired state is gone too: it cannot be retried.
    clock.now -= 61
    with pytest.raises(StateError, match="already used"):
        consume_state(request, late)


@override_settings(HUBSPOT_STATE_MAX_AGE=60)
def test_issuing_prunes_expired_flows(clock):
    request = make_request()
    old = issue_state(request, redirect_uri=REDIRECT)
    clock.now += 61
    fresh = issue_state(request, redirect_uri=REDIRECT)
    assert set(request.session[SESSION_KEY]) == {fresh}
    with pytest.raises(StateError):
        consume_state(request, old)


def test_the_oldest_pending_flow_is_dropped_past_max_pending(clock):
    request = make_request()
    issued = []
    for _ in range(MAX_PENDING + 1):
        issued.append(issue_state(request, redirect_uri=REDIRECT))
        clock.now += 1
    assert len(request.session[SESSION_KEY]) == MAX_PENDING
    with pytest.raises(StateError):
        consume_state(request, issued[0])
    for value in issued[1:]:
        consume_state(request, value)


def test_a_damaged_session_entry_counts_as_no_pending_flow():
    request = make_request()
    request.session[SESSION_KEY] = ["not", "a", "dict"]
    with pytest.raises(StateError):
        consume_state(request, "anything")
    value = issue_state(request, redirect_uri=REDIRECT)
    assert set(request.session[SESSION_KEY]) == {value}


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/steal",
        "//evil.example",
        "//evil.example/path",
        "https:evil.example",
        "http:/evil.example",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "\\\\evil.example",
        "/\\evil.example",
        "https://testserver.evil.example/",
        "ftp://testserver/x",
    ],
)
def test_off_site_next_urls_are_dropped(next_url):
    request = make_request()
    value = issue_state(request, redirect_uri=REDIRECT, next_url=next_url)
    assert consume_state(request, value).next_url is None


@pytest.mark.parametrize(
    ("next_url", "secure", "expected"),
    [
        ("/dashboard/?tab=hubspot", False, "/dashboard/?tab=hubspot"),
        ("http://testserver/x/", False, "http://testserver/x/"),
        ("https://testserver/x/", True, "https://testserver/x/"),
        ("http://testserver/x/", True, None),  # no downgrade from https
        ("", False, None),
        (None, False, None),
    ],
)
def test_safe_next_url(next_url, secure, expected):
    assert safe_next_url(make_request(secure=secure), next_url) == expected


# -- the portal a flow asked for -------------------------------------------------------------


def test_a_flow_remembers_the_portal_it_asked_for():
    request = make_request()
    value = issue_state(request, redirect_uri=REDIRECT, portal_id=87654321)
    assert consume_state(request, value).portal_id == 87654321
    assert consume_state(request, issue_state(request, redirect_uri=REDIRECT)).portal_id is None


@pytest.mark.parametrize("stored", ["87654321", True, 1.5, None, [1]])
def test_a_damaged_portal_in_the_session_counts_as_none(stored):
    request = make_request()
    value = issue_state(request, redirect_uri=REDIRECT, portal_id=87654321)
    request.session[SESSION_KEY][value]["portal_id"] = stored
    assert consume_state(request, value).portal_id is None


# -- the stored next is capped -------------------------------------------------------------------


def test_a_next_url_up_to_2000_characters_is_kept_a_longer_one_dropped():
    request = make_request()
    fits = "/" + "a" * (MAX_NEXT_LENGTH - 1)
    too_long = fits + "a"
    assert MAX_NEXT_LENGTH == 2000
    assert (
        consume_state(request, issue_state(request, redirect_uri=REDIRECT, next_url=fits)).next_url
        == fits
    )
    value = issue_state(request, redirect_uri=REDIRECT, next_url=too_long)
    assert request.session[SESSION_KEY][value]["next"] is None
    assert consume_state(request, value).next_url is None


def test_the_session_stays_small_with_hostile_next_urls():
    request = make_request()
    for _ in range(MAX_PENDING * 3):
        # Under the 2048 characters Django's own URL check refuses (Django 5.1+).
        issue_state(request, redirect_uri=REDIRECT, next_url="/" + "x" * 2040)
    assert len(json.dumps(request.session[SESSION_KEY])) < 2_000


# -- used states are recorded in the cache ---------------------------------------------


class RecordingCache(LocMemCache):
    """A LocMemCache that remembers what was added, and for how long."""

    added: list[tuple[str, object]] = []

    def add(
        self,
        key: str,
        value: object,
        timeout: object = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        RecordingCache.added.append((key, timeout))
        return super().add(key, value, timeout, version)


@pytest.fixture
def recording_cache() -> Iterator[list[tuple[str, object]]]:
    RecordingCache.added = []
    backend = {"BACKEND": f"{__name__}.RecordingCache", "LOCATION": "state-tests"}
    with override_settings(CACHES={"default": backend}):
        yield RecordingCache.added
        caches["default"].clear()


@override_settings(HUBSPOT_STATE_MAX_AGE=120)
def test_a_used_state_is_recorded_under_a_hash_for_state_max_age(recording_cache):
    request = make_request()
    value = issue_state(request, redirect_uri=REDIRECT)
    consume_state(request, value)
    ((key, timeout),) = recording_cache
    assert key == used_state_key(value)
    assert key == "hubspot_connect:used-state:" + hashlib.sha256(value.encode()).hexdigest()
    assert value not in key
    assert timeout == 120
    assert caches["default"].get(key) is True


def test_a_session_restored_from_before_the_callback_cannot_reuse_its_state():
    """What replaying a signed-cookie session does: the used flow is back in the session."""
    request = make_request()
    value = issue_state(request, redirect_uri=REDIRECT, next_url="/x/")
    snapshot = copy.deepcopy(request.session[SESSION_KEY])
    consume_state(request, value)
    request.session[SESSION_KEY] = snapshot
    with pytest.raises(StateError, match="already used"):
        consume_state(request, value)
    assert value not in request.session[SESSION_KEY]  # spent again, not kept


def test_the_same_state_in_two_sessions_is_used_once():
    """Two processes racing with copies of one session: the cache's add() lets one through."""
    first = make_request()
    value = issue_state(first, redirect_uri=REDIRECT)
    second = make_request()
    second.session[SESSION_KEY] = copy.deepcopy(first.session[SESSION_KEY])
    consume_state(first, value)
    with pytest.raises(StateError):
        consume_state(second, value)


def test_a_refused_state_is_not_recorded_as_used(recording_cache, clock):
    request = make_request()
    value = issue_state(request, redirect_uri=REDIRECT)
    with pytest.raises(StateError):
        consume_state(request, value[:-1])
    clock.now += 10_000
    with pytest.raises(StateError, match="expired"):
        consume_state(request, value)
    assert recording_cache == []


@override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}})
def test_a_dummy_cache_records_nothing_which_is_why_w003_warns():
    request = make_request()
    value = issue_state(request, redirect_uri=REDIRECT)
    snapshot = copy.deepcopy(request.session[SESSION_KEY])
    consume_state(request, value)
    request.session[SESSION_KEY] = snapshot
    assert consume_state(request, value).redirect_uri == REDIRECT
