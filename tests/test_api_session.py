"""hubspot_connect.tokens.api_session: a requests.Session that calls HubSpot as one portal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses

from hubspot_connect.exceptions import NeedsReauth, PortalDisconnected, UnknownPortal
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
