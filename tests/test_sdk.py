"""hubspot_connect.sdk: HubSpot's official SDK, authenticated as a portal for good.

The SDK really runs: its generated API classes call FakeHubSpotServer over real HTTP.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
import urllib3
from django.utils import timezone

from hubspot_connect.exceptions import HubSpotRateLimited, PortalDisconnected, UnknownPortal
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.refresh import refresh_connection
from hubspot_connect.session import HubSpotSession
from hubspot_connect.testing import FakeHubSpotServer

hubspot = pytest.importorskip("hubspot")

from hubspot_connect.sdk import PortalHubSpot, SessionPool, hubspot_client  # noqa: E402

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[1]
PORTAL = 12345678
SCOPES = ["oauth", "crm.objects.contacts.read"]


@pytest.fixture
def server(settings: Any) -> Iterator[FakeHubSpotServer]:
    with FakeHubSpotServer() as server:
        settings.HUBSPOT_API_BASE_URL = server.url
        yield server


def connect(
    server: FakeHubSpotServer, *, expires_in: int = 1800, **fields: Any
) -> HubSpotConnection:
    issued = server.fake.issue_tokens(PORTAL, SCOPES)
    return HubSpotConnection.objects.create(
        portal_id=PORTAL,
        scopes=SCOPES,
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=timezone.now() + timedelta(seconds=expires_in),
        **fields,
    )


def api_paths(server: FakeHubSpotServer) -> list[str]:
    return [path for _, path, _ in server.fake.requests if not path.startswith("/oauth/")]


def test_the_sdk_reads_contacts_as_the_portal(server: FakeHubSpotServer) -> None:
    connection = connect(server)
    client = hubspot_client(PORTAL)
    assert isinstance(client, hubspot.HubSpot)
    page = client.crm.contacts.basic_api.get_page(limit=2)
    assert [contact.properties["firstname"] for contact in page.results] == ["Ada", "Grace"]
    assert page.results[0].created_at.year == 2026
    assert api_paths(server) == ["/crm/v3/objects/contacts"]
    assert server.fake.limits.count(PORTAL) == 1  # the fake saw the portal's token
    assert client.access_token == connection.access_token


def test_the_sdk_searches_and_uses_api_request(server: FakeHubSpotServer) -> None:
    connect(server)
    client = hubspot_client(PORTAL)
    found = client.crm.contacts.search_api.do_search(public_object_search_request={"limit": 1})
    assert found.total == 1
    answer = client.api_request({"path": "/crm/objects/2026-03/contacts", "qs": {"limit": 3}})
    assert answer.status_code == 200
    assert len(answer.json()["results"]) == 3
    assert api_paths(server) == [
        "/crm/v3/objects/contacts/search",
        "/crm/objects/2026-03/contacts",
    ]
    assert server.fake.limits.count(PORTAL, search=True) == 1


def test_a_client_keeps_working_after_its_token_was_refreshed_elsewhere(
    server: FakeHubSpotServer,
) -> None:
    connection = connect(server, expires_in=60)  # due: within HUBSPOT_REFRESH_MARGIN
    client = hubspot_client(PORTAL)
    elsewhere = HubSpotConnection.objects.get(pk=connection.pk)
    assert refresh_connection(elsewhere)  # a cron job, another process
    with server.fake.store.transaction() as data:  # ...and the old token has expired
        data["access_tokens"][connection.access_token]["expires_at"] = 0
    page = client.crm.contacts.basic_api.get_page(limit=1)
    assert page.results[0].id == "1"
    assert server.fake.refresh_calls() == 1  # the client took the token stored elsewhere
    assert client.access_token == elsewhere.access_token


def test_a_client_recovers_from_a_401_for_a_token_replaced_elsewhere(
    server: FakeHubSpotServer,
) -> None:
    connection = connect(server)
    client = hubspot_client(PORTAL)
    elsewhere = HubSpotConnection.objects.get(pk=connection.pk)
    assert refresh_connection(elsewhere, force=True)
    with server.fake.store.transaction() as data:
        del data["access_tokens"][connection.access_token]
    assert client.crm.contacts.basic_api.get_page().results
    assert server.fake.refresh_calls() == 1
    assert server.answers.count(401) == 1


def test_the_sdk_follows_the_retry_rules(
    server: FakeHubSpotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HubSpotSession, "backoff", 0.01)
    connect(server)
    client = hubspot_client(PORTAL)
    server.fake.fail("status", status=503, endpoint="api")
    server.fake.fail("status", status=429, endpoint="api", retry_after=0)
    assert client.crm.contacts.basic_api.get_page().results  # 503, 429, then 200
    server.fake.fail("status", status=503, endpoint="api")
    with pytest.raises(hubspot.crm.contacts.ApiException) as caught:  # a POST is not resent
        client.crm.contacts.search_api.do_search(public_object_search_request={})
    assert caught.value.status == 503
    server.fake.limits.daily = 0
    with pytest.raises(HubSpotRateLimited) as limited:
        client.crm.contacts.basic_api.get_page()
    assert limited.value.policy == "DAILY"
    assert server.answers == [503, 429, 200, 503, 429]


def test_hubspot_client_needs_a_usable_portal(server: FakeHubSpotServer) -> None:
    with pytest.raises(UnknownPortal):
        hubspot_client(PORTAL)
    connect(server, status="disconnected")
    with pytest.raises(PortalDisconnected):
        hubspot_client(PORTAL)


def test_session_pool_encodes_like_urllib3(server: FakeHubSpotServer, settings: Any) -> None:
    settings.HUBSPOT_HTTP_TIMEOUT = 7
    pool = SessionPool(HubSpotSession(connect(server)))
    url = f"{server.url}/x"
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, url, body=b"ok", headers={"X-Tag": "1"})
        mock.add(responses.POST, url, body=b"{}", status=201)
        got = pool.request("GET", url, fields=[("a", "1"), ("b", "2")], headers={})
        pool.request("POST", url, fields=[("c", "3")], encode_multipart=False)
        pool.request("POST", url, fields=[("d", "4")], timeout=urllib3.Timeout(total=3))
        pool.request("POST", url, body="{}", timeout=urllib3.Timeout(connect=1, read=2))
        pool.request("POST", url, body="{}", timeout=urllib3.Timeout(connect=1))
        requests_seen = [call.request for call in mock.calls]
        timeouts = [call.request.req_kwargs["timeout"] for call in mock.calls]
    assert (got.status, got.data, got.getheader("X-Tag")) == (200, b"ok", "1")
    assert requests_seen[0].url == f"{url}?a=1&b=2"
    assert requests_seen[1].body == "c=3"
    assert requests_seen[1].headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert b'name="d"' in requests_seen[2].body
    assert requests_seen[2].headers["Content-Type"].startswith("multipart/form-data")
    assert timeouts == [7, 7, 3, (1, 2), 7]
    assert requests_seen[3].headers["Authorization"].startswith("Bearer C")
    pool.clear()


def test_the_client_is_a_portal_hubspot(server: FakeHubSpotServer) -> None:
    import logging

    connect(server)
    urllib3_logger = logging.getLogger("urllib3")
    before = urllib3_logger.level
    urllib3_logger.setLevel(logging.DEBUG)
    try:
        client = hubspot_client(PORTAL, max_wait=3)
        assert client.crm.contacts.basic_api is not None
        assert urllib3_logger.level == logging.DEBUG  # the site's logging stays as it was
    finally:
        urllib3_logger.setLevel(before)
    assert isinstance(client, PortalHubSpot)
    assert client.session.max_wait == 3
    assert client.config["access_token"] is None  # no copy of a token to go stale
    # The SDK's own options still reach every API class it makes.
    strict = PortalHubSpot(client.session, client_side_validation=False)
    api = strict.crm.contacts.basic_api
    assert api.api_client.configuration.client_side_validation is False
    assert api.api_client.configuration.host == client.session.base_url


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [("hubspot_connect.sdk", "hubspot", "sdk"), ("hubspot_connect.aio", "httpx", "async")],
)
def test_importing_without_the_extra_says_what_to_install(
    module: str, missing: str, extra: str
) -> None:
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "from django.core.exceptions import ImproperlyConfigured\n"
        f"try:\n    import {module}\nexcept ImproperlyConfigured as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert f"pip install 'django-hubspot-connect[{extra}]'" in result.stdout
