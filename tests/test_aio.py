"""hubspot_connect.aio: HubSpot's APIs from async code, over real HTTP (httpx)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from asgiref.sync import async_to_sync
from django.core.cache import caches
from django.utils import timezone

from hubspot_connect.exceptions import HubSpotRateLimited, UnknownPortal
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.testing import FakeHubSpotServer

httpx = pytest.importorskip("httpx")

from hubspot_connect.aio import AsyncHubSpotSession, async_api_session  # noqa: E402

pytestmark = pytest.mark.django_db
PORTAL = 12345678
CONTACTS = "/crm/objects/2026-03/contacts"
T = TypeVar("T")


def run(coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run async code as an ASGI server would: the ORM work stays in this thread."""
    return async_to_sync(coroutine)()


@pytest.fixture
def server(settings: Any) -> Iterator[FakeHubSpotServer]:
    caches["default"].clear()  # the request budget starts empty, and ends so
    with FakeHubSpotServer(timeout_hold=3) as server:
        settings.HUBSPOT_API_BASE_URL = server.url
        yield server
    caches["default"].clear()


@pytest.fixture
def connection(server: FakeHubSpotServer) -> HubSpotConnection:
    issued = server.fake.issue_tokens(PORTAL, ["oauth", "crm.objects.contacts.read"])
    return HubSpotConnection.objects.create(
        portal_id=PORTAL,
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=timezone.now() + timedelta(minutes=30),
    )


def quick(session: AsyncHubSpotSession) -> AsyncHubSpotSession:
    session.backoff = 0.01
    return session


def test_async_calls_reach_hubspot_as_the_portal(
    server: FakeHubSpotServer, connection: HubSpotConnection
) -> None:
    async def calls() -> list[Any]:
        async with async_api_session(PORTAL) as session:
            contacts = await session.get(CONTACTS, params={"limit": 2})
            details = await session.get("account-info/2026-03/details")
            elsewhere = await session.get(server.url.replace("127.0.0.1", "localhost") + CONTACTS)
            return [contacts, details, elsewhere]

    contacts, details, elsewhere = run(calls)
    assert len(contacts.json()["results"]) == 2
    assert details.json()["portalId"] == PORTAL
    assert elsewhere.status_code == 401  # no token for another host
    assert contacts.request.headers["User-Agent"].startswith("django-hubspot-connect/")
    assert server.fake.limits.count(PORTAL) == 2


def test_an_unknown_portal_fails_on_the_first_request(server: FakeHubSpotServer) -> None:
    async def call() -> None:
        async with async_api_session(4242) as session:
            await session.get(CONTACTS)

    with pytest.raises(UnknownPortal):
        run(call)


def test_async_retries_follow_the_same_rules(
    server: FakeHubSpotServer, connection: HubSpotConnection
) -> None:
    fake = server.fake

    async def calls() -> list[int]:
        async with quick(async_api_session(connection)) as session:
            fake.fail("status", status=503, endpoint="api")
            fake.fail("status", status=429, endpoint="api", retry_after=0)
            statuses = [(await session.get(CONTACTS)).status_code]  # 503, 429, 200
            fake.fail("status", status=503, endpoint="api")
            search = f"{CONTACTS}/search"
            statuses.append((await session.post(search, json={})).status_code)  # not resent
            fake.fail("status", status=503, endpoint="api")
            answer = await session.request("POST", search, json={}, retry=True)
            statuses.append(answer.status_code)
            fake.fail("status", status=503, endpoint="api")
            answer = await session.get(CONTACTS, extensions={"hubspot_connect": {"retry": False}})
            statuses.append(answer.status_code)
            return statuses

    assert run(calls) == [200, 503, 200, 503]
    assert server.answers == [503, 429, 200, 503, 503, 200, 503]


def test_async_timeouts_are_retried_for_a_get(
    server: FakeHubSpotServer, connection: HubSpotConnection, settings: Any
) -> None:
    settings.HUBSPOT_HTTP_TIMEOUT = 0.3
    server.fake.fail("timeout", endpoint="api")

    async def call() -> int:
        async with quick(async_api_session(PORTAL)) as session:
            return (await session.get(CONTACTS)).status_code

    assert run(call) == 200
    server.fake.fail("timeout", endpoint="api")

    async def post() -> None:
        async with quick(async_api_session(PORTAL)) as session:
            await session.post(f"{CONTACTS}/search", json={})

    with pytest.raises(httpx.ReadTimeout):
        run(post)


def test_async_rate_limits(server: FakeHubSpotServer, connection: HubSpotConnection) -> None:
    server.fake.limits.daily = 0

    async def call() -> None:
        async with async_api_session(PORTAL) as session:
            await session.get(CONTACTS)

    with pytest.raises(HubSpotRateLimited) as caught:
        run(call)
    assert caught.value.policy == "DAILY"

    server.fake.limits.daily = None
    server.fake.fail("status", status=429, endpoint="api", retry_after=2)

    async def blocked() -> int:
        async with async_api_session(PORTAL, max_wait=30) as session:
            first = asyncio.ensure_future(session.get(CONTACTS))  # meets the 429, waits 2 s
            await asyncio.sleep(0.5)
            with pytest.raises(HubSpotRateLimited) as waited:  # ...and so does everyone else
                await session.request("GET", CONTACTS, max_wait=0)
            assert waited.value.http_status is None  # the shared budget said no, not HubSpot
            return (await first).status_code

    assert run(blocked) == 200
    assert server.answers == [429, 429, 200]


def test_a_401_refreshes_once(server: FakeHubSpotServer, connection: HubSpotConnection) -> None:
    server.fake.expire_access_tokens()

    async def call() -> int:
        async with async_api_session(PORTAL) as session:
            return (await session.get(CONTACTS)).status_code

    assert run(call) == 200
    assert server.fake.refresh_calls() == 1
    stored = HubSpotConnection.objects.get(pk=connection.pk)
    assert stored.access_token != connection.access_token


def test_waiting_for_the_budget_never_blocks_the_event_loop(
    server: FakeHubSpotServer, connection: HubSpotConnection, settings: Any
) -> None:
    settings.HUBSPOT_RATE_LIMIT = (4, 0.5)
    server.fake.limits.api = (4, 0.5)
    ticks: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(asyncio.get_running_loop().time())
            await asyncio.sleep(0.01)

    async def calls() -> list[int]:
        stop = asyncio.Event()
        tick = asyncio.ensure_future(ticker(stop))
        async with async_api_session(PORTAL) as session:
            answers = await asyncio.gather(*(session.get(CONTACTS) for _ in range(10)))
        stop.set()
        await tick
        return [answer.status_code for answer in answers]

    assert run(calls) == [200] * 10
    assert server.fake.limits.refused() == 0
    assert server.fake.limits.max_in_window(PORTAL, 0.5) <= 4
    assert len(ticks) > 20  # the loop kept running while requests waited for places


def test_a_base_url_with_a_path(settings: Any) -> None:
    settings.HUBSPOT_API_BASE_URL = "http://127.0.0.1:8000/fake-hubspot/api/"
    session = AsyncHubSpotSession(PORTAL)
    url = httpx.URL("http://127.0.0.1:8000/fake-hubspot/api/crm/v3/objects/contacts/search")
    assert session.hubspot_path(url) == "/crm/v3/objects/contacts/search"
    assert session.hubspot_path(httpx.URL("http://127.0.0.1:8000/fake-hubspot/api")) == "/"
    assert session.hubspot_path(httpx.URL("https://127.0.0.1:8000/fake-hubspot/api/x")) is None
