"""hubspot_connect.tokens.api_session: a requests.Session that calls HubSpot as one portal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses
from django.core.cache import caches

from hubspot_connect.exceptions import (
    HubSpotRateLimited,
    HubSpotUnavailable,
    NeedsReauth,
    PortalDisconnected,
    UnknownPortal,
)
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.refresh import refresh_connection
from hubspot_connect.testing import FakeHubSpot
from hubspot_connect.tokens import HubSpotSession, api_session
from hubspot_connect.transport import USER_AGENT

pytestmark = pytest.mark.django_db

MakeConnection = Callable[..., HubSpotConnection]
API = "https://api.hubapi.com"


def api_calls(fake: FakeHubSpot) -> list[str]:
    return [path for method, path, _ in fake.requests if method == "GET"]


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """Plain ``responses`` for checks on exact headers; no token endpoint is reachable."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def test_relative_urls_reach_hubspot_with_the_bearer_token(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    session = api_session(connection.portal_id)
    assert isinstance(session, requests.Session)
    response = session.get("/account-info/v3/details")
    assert response.status_code == 200, response.text
    assert response.json()["portalId"] == connection.portal_id
    contacts = session.get("crm/v3/objects/contacts", params={"limit": 2})
    assert contacts.status_code == 200
    assert len(contacts.json()["results"]) == 2
    assert fake_hubspot.refresh_calls() == 0


def test_headers_timeout_and_user_agent(
    make_connection: MakeConnection, mocked: responses.RequestsMock, settings: Any
) -> None:
    settings.HUBSPOT_HTTP_TIMEOUT = 4.5
    connection = make_connection()
    mocked.get(f"{API}/crm/v3/objects/contacts", json={"results": []})
    session = api_session(connection)
    session.get("crm/v3/objects/contacts", headers={"X-Trace": "1"})
    session.get(f"{API}/crm/v3/objects/contacts", timeout=2)
    first, second = (call.request for call in mocked.calls)
    assert first.headers["Authorization"] == f"Bearer {connection.access_token}"
    assert first.headers["X-Trace"] == "1"
    assert first.headers["User-Agent"] == USER_AGENT
    assert first.req_kwargs["timeout"] == 4.5
    assert second.req_kwargs["timeout"] == 2
    assert second.headers["Authorization"] == f"Bearer {connection.access_token}"


def test_a_base_url_with_a_path_is_kept(
    make_connection: MakeConnection, mocked: responses.RequestsMock, settings: Any
) -> None:
    settings.HUBSPOT_API_BASE_URL = "http://127.0.0.1:8000/fake-hubspot/api/"
    connection = make_connection()
    mocked.get("http://127.0.0.1:8000/fake-hubspot/api/account-info/v3/details", json={})
    assert api_session(connection).get("/account-info/v3/details").status_code == 200
    assert mocked.calls[0].request.headers["Authorization"].startswith("Bearer C")


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/collect",
        "http://api.hubapi.com/account-info/v3/details",  # no downgrade to plain HTTP
        "https://api.hubapi.com.example.com/x",
        "https://api.hubapi.com:8443/x",
    ],
)
def test_the_token_is_never_sent_to_another_host(
    make_connection: MakeConnection, mocked: responses.RequestsMock, url: str
) -> None:
    connection = make_connection()
    mocked.get(url, body="ok")
    response = api_session(connection).get(url)
    assert response.status_code == 200
    assert "Authorization" not in mocked.calls[0].request.headers


def test_a_redirect_to_another_host_drops_the_token(
    make_connection: MakeConnection, mocked: responses.RequestsMock
) -> None:
    connection = make_connection()
    mocked.get(
        f"{API}/files/v3/files/1/signed-url",
        status=302,
        headers={"Location": "https://cdn.example.com/file.pdf"},
    )
    mocked.get("https://cdn.example.com/file.pdf", body="pdf")
    response = api_session(connection).get("/files/v3/files/1/signed-url")
    assert response.text == "pdf"
    hubspot_call, cdn_call = mocked.calls
    assert "Authorization" in hubspot_call.request.headers
    assert "Authorization" not in cdn_call.request.headers


def test_an_expiring_token_is_refreshed_before_the_request(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=30)
    response = api_session(connection.portal_id).get("/account-info/v3/details")
    assert response.status_code == 200
    assert fake_hubspot.refresh_calls() == 1
    assert api_calls(fake_hubspot) == ["/account-info/v3/details"]


def test_a_401_refreshes_once_and_retries_once(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection(expires_in=1800)
    old = connection.access_token
    session = api_session(connection.portal_id)
    fake_hubspot.expire_access_tokens()  # HubSpot says expired; our clock says fresh
    response = session.get("/account-info/v3/details")
    assert response.status_code == 200
    assert fake_hubspot.refresh_calls() == 1
    assert api_calls(fake_hubspot) == ["/account-info/v3/details"] * 2
    stored = HubSpotConnection.objects.get(pk=connection.pk)
    assert stored.access_token != old
    assert session.connection.access_token == stored.access_token


def test_a_second_401_is_returned_to_the_caller(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("status", status=401, endpoint="api", times=5)
    response = api_session(connection).get("/account-info/v3/details")
    assert response.status_code == 401
    assert fake_hubspot.refresh_calls() == 1
    assert len(api_calls(fake_hubspot)) == 2


def test_a_401_after_another_worker_refreshed_uses_that_token(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    session = api_session(connection.portal_id)
    other = HubSpotConnection.objects.get(pk=connection.pk)
    assert refresh_connection(other, force=True)
    fake_hubspot.fail("status", status=401, endpoint="api")  # the old token is refused once
    response = session.get("/account-info/v3/details")
    assert response.status_code == 200
    assert fake_hubspot.refresh_calls() == 1  # no second refresh
    assert session.connection.access_token == other.access_token


def test_a_401_with_a_revoked_refresh_token_raises_needs_reauth(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    session = api_session(connection)
    fake_hubspot.revoke_all()
    fake_hubspot.expire_access_tokens()
    with pytest.raises(NeedsReauth):
        session.get("/account-info/v3/details")
    assert HubSpotConnection.objects.get(pk=connection.pk).status == "needs_reauth"


def test_a_401_while_hubspot_is_down_returns_the_401(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.expire_access_tokens()
    fake_hubspot.fail("status", status=503)
    response = api_session(connection).get("/account-info/v3/details")
    assert response.status_code == 401
    assert HubSpotConnection.objects.get(pk=connection.pk).refresh_failures == 1


def test_api_session_for_an_unknown_or_disconnected_portal(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    with pytest.raises(UnknownPortal):
        api_session(4242)
    connection = make_connection(status="disconnected")
    with pytest.raises(PortalDisconnected):
        api_session(connection.portal_id)


def test_bytes_urls_work(make_connection: MakeConnection, fake_hubspot: FakeHubSpot) -> None:
    session = HubSpotSession(make_connection())
    assert session.request("GET", b"/account-info/v3/details").status_code == 200


# -- retries ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_budget() -> Iterator[None]:
    """Every test starts with an empty request budget (it lives in the default cache)."""
    caches["default"].clear()
    yield
    caches["default"].clear()


def quick(session: HubSpotSession) -> HubSpotSession:
    session.backoff = 0.01  # the same doubling and jitter, without the test waiting
    return session


def test_a_429_is_waited_out_and_sent_again(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("status", status=429, endpoint="api", retry_after=0, times=2)
    response = api_session(connection).get("/crm/objects/2026-03/contacts")
    assert response.status_code == 200
    assert len(api_calls(fake_hubspot)) == 3


def test_a_429_waits_as_long_as_retry_after_says(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("status", status=429, endpoint="api", retry_after=1)
    started = time.monotonic()
    assert api_session(connection).get("/crm/objects/2026-03/contacts").status_code == 200
    assert time.monotonic() - started >= 1.0


def test_a_429_longer_than_max_wait_raises_without_sending_again(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("status", status=429, endpoint="api", retry_after=5)
    session = api_session(connection, max_wait=2)
    with pytest.raises(HubSpotRateLimited) as caught:
        session.get("/crm/objects/2026-03/contacts?email=ada@example.com")
    assert caught.value.policy == "TEN_SECONDLY_ROLLING"
    assert 5 <= (caught.value.retry_after or 0) <= 5.5
    assert caught.value.http_status == 429
    assert "GET /crm/objects/2026-03/contacts" in str(caught.value)
    assert "ada@" not in str(caught.value)  # no query string in messages
    assert len(api_calls(fake_hubspot)) == 1
    assert isinstance(caught.value, HubSpotUnavailable)


def test_max_wait_can_be_raised_for_one_request(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    session = api_session(connection, max_wait=0)
    fake_hubspot.fail("status", status=429, endpoint="api", retry_after=1)
    assert session.get("/account-info/2026-03/details", max_wait=3).status_code == 200
    fake_hubspot.fail("status", status=429, endpoint="api", retry_after=1)
    with pytest.raises(HubSpotRateLimited):
        session.get("/account-info/2026-03/details")


def test_a_429_without_retry_after_waits_the_policys_window(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.fail("status", status=429, endpoint="api")
    with pytest.raises(HubSpotRateLimited) as caught:
        api_session(connection, max_wait=5).get("/account-info/2026-03/details")
    assert 10 <= (caught.value.retry_after or 0) <= 11  # TEN_SECONDLY_ROLLING: 10 s


def test_the_daily_limit_is_never_waited_for(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    fake_hubspot.limits.daily = 1
    session = api_session(connection)
    assert session.get("/account-info/2026-03/details").status_code == 200
    with pytest.raises(HubSpotRateLimited) as caught:
        session.get("/account-info/2026-03/details")
    assert caught.value.policy == "DAILY"
    assert "daily" in str(caught.value)
    assert len(api_calls(fake_hubspot)) == 2


def test_the_search_limit_is_waited_out_when_no_budget_keeps_to_it(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, settings: Any
) -> None:
    settings.HUBSPOT_SEARCH_RATE_LIMIT = None  # only HubSpot's 429 holds the calls back
    connection = make_connection()
    session = api_session(connection)
    statuses = [
        session.post("/crm/objects/2026-03/contacts/search", json={"limit": 1}).status_code
        for _ in range(6)
    ]
    assert statuses == [200] * 6
    assert fake_hubspot.limits.refused() == 1  # SECONDLY: the sixth waited a second


def test_the_search_budget_keeps_searches_under_hubspots_limit(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    session = api_session(connection)
    for _ in range(7):
        response = session.post("/crm/v3/objects/contacts/search", json={"limit": 2})
        assert response.json()["total"] == 2
    assert fake_hubspot.limits.refused() == 0
    assert fake_hubspot.limits.max_in_window(connection.portal_id, 1.0, search=True) <= 5


def test_the_budget_makes_requests_wait_instead_of_meeting_429s(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, settings: Any
) -> None:
    settings.HUBSPOT_RATE_LIMIT = (4, 0.5)
    fake_hubspot.limits.api = (4, 0.5)
    connection = make_connection()
    session = api_session(connection)
    for _ in range(10):
        assert session.get("/crm/objects/2026-03/contacts").status_code == 200
    assert fake_hubspot.limits.refused() == 0
    assert fake_hubspot.limits.max_in_window(connection.portal_id, 0.5) <= 4


def test_a_full_budget_raises_after_max_wait_without_calling_hubspot(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, settings: Any
) -> None:
    settings.HUBSPOT_RATE_LIMIT = (2, 10)  # one request per 10.2 s slot
    connection = make_connection()
    session = api_session(connection, max_wait=0)  # a free place needs no wait
    assert session.get("/account-info/2026-03/details").status_code == 200
    with pytest.raises(HubSpotRateLimited) as caught:
        session.get("/account-info/2026-03/details")
    assert caught.value.http_status is None  # the site's own budget, not HubSpot
    assert len(api_calls(fake_hubspot)) == 1


def test_no_budget_when_both_limits_are_off(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, settings: Any
) -> None:
    settings.HUBSPOT_RATE_LIMIT = None
    settings.HUBSPOT_SEARCH_RATE_LIMIT = None
    fake_hubspot.limits.api = (3, 10)
    session = api_session(make_connection(), max_wait=0)
    for _ in range(3):
        session.get("/account-info/2026-03/details")
    with pytest.raises(HubSpotRateLimited):  # HubSpot's own 429, not waited for
        session.get("/account-info/2026-03/details")


@pytest.mark.parametrize("status", [502, 503, 504])
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
def test_idempotent_requests_are_retried_after_a_gateway_error(
    make_connection: MakeConnection, mocked: responses.RequestsMock, method: str, status: int
) -> None:
    connection = make_connection()
    url = f"{API}/crm/objects/2026-03/contacts/1"
    mocked.add(method, url, status=status)
    mocked.add(method, url, status=200)
    response = quick(api_session(connection)).request(method, url)
    assert response.status_code == 200
    assert len(mocked.calls) == 2


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_post_and_patch_are_not_sent_twice_unless_asked(
    make_connection: MakeConnection, mocked: responses.RequestsMock, method: str
) -> None:
    connection = make_connection()
    url = f"{API}/crm/objects/2026-03/contacts"
    for status in (503, 503, 201):
        mocked.add(method, url, status=status)
    session = quick(api_session(connection))
    assert session.request(method, url, json={"a": 1}).status_code == 503
    assert len(mocked.calls) == 1
    assert session.request(method, url, json={"a": 1}, retry=True).status_code == 201
    assert len(mocked.calls) == 3


def test_a_get_can_opt_out_of_retries(
    make_connection: MakeConnection, mocked: responses.RequestsMock
) -> None:
    mocked.get(f"{API}/crm/objects/2026-03/contacts", status=503)
    session = quick(api_session(make_connection()))
    assert session.get("/crm/objects/2026-03/contacts", retry=False).status_code == 503
    assert len(mocked.calls) == 1


def test_retries_stop_after_four_and_return_the_last_answer(
    make_connection: MakeConnection, mocked: responses.RequestsMock
) -> None:
    mocked.get(f"{API}/crm/objects/2026-03/contacts", status=502)
    response = quick(api_session(make_connection())).get("/crm/objects/2026-03/contacts")
    assert response.status_code == 502
    assert len(mocked.calls) == 5


def test_retries_stop_when_the_backoff_would_pass_max_wait(
    make_connection: MakeConnection, mocked: responses.RequestsMock
) -> None:
    mocked.get(f"{API}/crm/objects/2026-03/contacts", status=503, headers={"Retry-After": "9"})
    session = api_session(make_connection(), max_wait=3)
    assert session.get("/crm/objects/2026-03/contacts").status_code == 503
    assert len(mocked.calls) == 1


def test_other_errors_are_not_retried(
    make_connection: MakeConnection, mocked: responses.RequestsMock
) -> None:
    mocked.get(f"{API}/crm/objects/2026-03/contacts", status=500)
    mocked.get(f"{API}/crm/objects/2026-03/contacts/9", status=404)
    session = quick(api_session(make_connection()))
    assert session.get("/crm/objects/2026-03/contacts").status_code == 500
    assert session.get("/crm/objects/2026-03/contacts/9").status_code == 404
    assert len(mocked.calls) == 2


@pytest.mark.parametrize("kind", ["timeout", "reset"])
def test_timeouts_and_connection_errors_are_retried_for_a_get(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, kind: str
) -> None:
    connection = make_connection()
    fake_hubspot.fail(kind, endpoint="api", times=2)
    response = quick(api_session(connection)).get("/account-info/2026-03/details")
    assert response.status_code == 200
    assert len(api_calls(fake_hubspot)) == 3


@pytest.mark.parametrize(
    ("kind", "error"),
    [("timeout", requests.Timeout), ("reset", requests.ConnectionError)],
)
def test_timeouts_and_connection_errors_of_a_post_reach_the_caller(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, kind: str, error: type
) -> None:
    connection = make_connection()
    fake_hubspot.fail(kind, endpoint="api", times=6)
    session = quick(api_session(connection))
    with pytest.raises(error):
        session.post("/crm/objects/2026-03/contacts/search", json={})
    assert len(fake_hubspot.requests) == 1
    with pytest.raises(error):  # a GET gives up after four retries
        session.get("/account-info/2026-03/details")
    assert len(fake_hubspot.requests) == 6


def test_a_401_seen_by_many_copies_of_the_connection_refreshes_once(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    # Several requests loaded the same row (as other threads and processes would)...
    sessions = [api_session(connection.portal_id) for _ in range(4)]
    shared = HubSpotSession(sessions[0].connection)  # ...or share one connection object
    fake_hubspot.expire_access_tokens()  # ...and all of them meet the 401
    for session in [*sessions, shared]:
        assert session.get("/account-info/2026-03/details").status_code == 200
    assert fake_hubspot.refresh_calls() == 1
    tokens = {session.connection.access_token for session in [*sessions, shared]}
    assert tokens == {HubSpotConnection.objects.get(pk=connection.pk).access_token}


def test_a_401_for_a_token_another_request_already_replaced_refreshes_nothing(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    first, second = HubSpotSession(connection), HubSpotSession(connection)
    fake_hubspot.expire_access_tokens()

    def meanwhile(endpoint: str) -> None:
        # While `second` waits for its answer, `first` (same connection object, another
        # thread in real life) meets the 401 too and refreshes.
        fake_hubspot.fault_plan = None
        assert first.get("/account-info/2026-03/details").status_code == 200

    fake_hubspot.fault_plan = meanwhile
    assert second.get("/account-info/2026-03/details").status_code == 200
    assert fake_hubspot.refresh_calls() == 1
    assert api_calls(fake_hubspot) == ["/account-info/2026-03/details"] * 4


def test_a_401_after_a_token_the_session_cannot_refresh_goes_to_the_caller(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    from hubspot_connect.account import _NewTokenSession

    connection = make_connection()
    fake_hubspot.expire_access_tokens()
    response = _NewTokenSession(connection).get("/account-info/2026-03/details")
    assert response.status_code == 401
    assert fake_hubspot.refresh_calls() == 0
    assert len(api_calls(fake_hubspot)) == 1


def test_retries_and_waits_are_logged_without_secrets(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, caplog: pytest.LogCaptureFixture
) -> None:
    connection = make_connection()
    fake_hubspot.fail("status", status=503, endpoint="api")
    fake_hubspot.fail("reset", endpoint="api")
    with caplog.at_level(logging.INFO, logger="hubspot_connect"):
        quick(api_session(connection)).get("/account-info/2026-03/details?x=secretive")
    assert "GET /account-info/2026-03/details answered 503; retrying" in caplog.text
    assert "failed (ConnectionError); retrying" in caplog.text
    assert connection.access_token not in caplog.text
    assert "secretive" not in caplog.text


@pytest.mark.slow
def test_a_401_met_by_many_processes_at_once_refreshes_once(tmp_path: Any) -> None:
    """Three processes of four threads each load the row, then send at the same moment
    with a token HubSpot no longer accepts: one refresh in all, every request answered."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hubspot_connect.testing import FakeHubSpotServer

    root = Path(__file__).resolve().parents[1]
    with FakeHubSpotServer() as server:
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")])),
            DJANGO_SETTINGS_MODULE="tests.budget.settings",
            DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3",
            HUBSPOT_API_BASE_URL=server.url,
        )

        def step(*args: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=root,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )

        def finish(child: subprocess.Popen[str]) -> str:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            return out

        finish(step("django", "migrate", "--verbosity", "0"))
        issued = server.fake.issue_tokens(12345678, ["oauth"])
        finish(
            step(
                "tests.budget.worker",
                "seed",
                "12345678",
                issued["access_token"],
                issued["refresh_token"],
            )
        )
        server.fake.expire_access_tokens()
        start = time.time() + 3
        children = [
            step("tests.budget.worker", "burst401", "12345678", "4", str(start)) for _ in range(3)
        ]
        statuses = [s for child in children for s in json.loads(finish(child))["statuses"]]
        assert statuses == ["200"] * 12
        assert server.fake.refresh_calls() == 1
