"""No secret in error reports: Django's DEBUG page, the admin error email, error trackers.

Each failure escapes a view of the test site: HubSpot down while the token has expired, a
database error during the callback, and a ``requests`` error inside ``api_session``. For
each, the test renders Django's technical 500 page (DEBUG on), the HTML email of
``AdminEmailHandler(include_html=True)`` (DEBUG off), and walks the traceback's frames as
an error tracker does (``repr`` of every local, chained exceptions included), and looks
for every token, the client secret and the authorization code in all three.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import django
import pytest
from django.conf import settings
from django.core import mail
from django.core.signals import got_request_exception
from django.db import OperationalError
from django.db import connection as db_connection
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import include, path, reverse
from django.utils.log import AdminEmailHandler

from hubspot_connect.models import HubSpotConnection
from hubspot_connect.sensitive import REDACTED, Secret, secret
from hubspot_connect.testing import FakeHubSpot
from hubspot_connect.tokens import api_session, get_access_token

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
# Django 6.0 takes addresses; earlier versions (name, address) pairs.
ADMINS: list[Any] = (
    ["ops@example.com"] if django.VERSION >= (6, 0) else [("Ops", "ops@example.com")]
)


def token_view(request: HttpRequest, portal_id: int) -> HttpResponse:
    return HttpResponse(get_access_token(portal_id)[:0] + "ok")


def api_view(request: HttpRequest, portal_id: int) -> HttpResponse:
    return HttpResponse(api_session(portal_id).get("/crm/v3/objects/contacts").status_code)


urlpatterns = [
    path("token/<int:portal_id>/", token_view),
    path("api/<int:portal_id>/", api_view),
    path("hubspot/", include("hubspot_connect.urls")),
]


def frame_reprs(exc: BaseException) -> Iterator[str]:
    """What an error tracker records: repr() of every local of every frame, every cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield repr(current)
        traceback = current.__traceback__
        while traceback is not None:
            for name, value in traceback.tb_frame.f_locals.items():
                yield f"{name}={value!r}"
            traceback = traceback.tb_next
        cause = current.__cause__
        current = (
            cause
            if cause is not None
            else (None if current.__suppress_context__ else current.__context__)
        )


class Reports:
    """Captures the three reports of the next request that fails."""

    def __init__(self) -> None:
        self.exc_info: ExcInfo | None = None
        self.handler = AdminEmailHandler(include_html=True)
        got_request_exception.connect(self.capture, dispatch_uid="test_error_reports")
        logging.getLogger("django.request").addHandler(self.handler)

    def capture(self, **kwargs: Any) -> None:
        exc_info = sys.exc_info()
        assert exc_info[1] is not None
        self.exc_info = exc_info  # type: ignore[assignment]

    def close(self) -> None:
        got_request_exception.disconnect(dispatch_uid="test_error_reports")
        logging.getLogger("django.request").removeHandler(self.handler)

    def collect(self, fail: Callable[[], Any]) -> dict[str, str]:
        """The DEBUG page, the admin email's HTML and the frame locals of what ``fail`` does
        (a request that fails; called twice)."""
        with override_settings(DEBUG=True):
            debug_page = fail()
        assert debug_page.status_code == 500
        assert self.exc_info is not None
        frames = "\n".join(frame_reprs(self.exc_info[1]))
        mail.outbox.clear()
        with override_settings(DEBUG=False, ADMINS=ADMINS):
            assert fail().status_code == 500
        # Django's own mail_admins handler sends a text email; ours the HTML one.
        texts = [message.message().as_string() for message in mail.outbox]
        html = [str(part[0]) for message in mail.outbox for part in message.alternatives]  # type: ignore[attr-defined]
        assert len(html) == 1
        assert "Local vars" in html[0].replace("Local Vars", "Local vars")
        return {
            "debug page": debug_page.content.decode(),
            "admin emails": "\n".join([*texts, *html]),
            "frames": frames,
        }


@pytest.fixture
def reports() -> Iterator[Reports]:
    reports = Reports()
    yield reports
    reports.close()


def assert_clean(reports: dict[str, str], secrets: list[str]) -> None:
    for where, text in reports.items():
        for value in secrets:
            assert value
            assert value not in text, f"a secret appears in the {where}"


def test_secret_behaves_as_its_value_but_repr_is_redacted() -> None:
    value = secret("Cabc-token")
    assert value == "Cabc-token"
    assert f"Bearer {value}" == "Bearer Cabc-token"
    assert value.encode() == b"Cabc-token"
    assert str(value) == "Cabc-token"
    assert repr(value) == REDACTED
    assert repr({"token": value}) == "{'token': " + REDACTED + "}"
    assert secret(value) is value
    assert isinstance(secret("x"), Secret)


def test_stored_tokens_come_back_as_secrets(make_connection: Callable[..., Any]) -> None:
    row = HubSpotConnection.objects.get(pk=make_connection().pk)
    assert isinstance(row.access_token, Secret)
    assert isinstance(row.refresh_token, Secret)
    assert row.access_token not in repr(vars(row))


@override_settings(ROOT_URLCONF=__name__)
def test_hubspot_down_while_the_token_has_expired(
    make_connection: Callable[..., Any],
    fake_hubspot: FakeHubSpot,
    reports: Reports,
    client: Client,
) -> None:
    row = make_connection(expires_in=-60)
    fake_hubspot.fail("status", status=503, times=10)
    client.raise_request_exception = False
    found = reports.collect(lambda: client.get(f"/token/{row.portal_id}/"))
    assert "HubSpotUnavailable" in found["debug page"]
    assert_clean(found, [row.access_token, row.refresh_token, settings.HUBSPOT_CLIENT_SECRET])


@override_settings(ROOT_URLCONF=__name__)
def test_a_requests_error_inside_api_session(
    make_connection: Callable[..., Any],
    fake_hubspot: FakeHubSpot,
    reports: Reports,
    client: Client,
) -> None:
    row = make_connection()
    fake_hubspot.fail("reset", endpoint="api", times=10)
    client.raise_request_exception = False
    found = reports.collect(lambda: client.get(f"/api/{row.portal_id}/"))
    assert "ConnectionError" in found["debug page"]
    assert_clean(found, [row.access_token, row.refresh_token, settings.HUBSPOT_CLIENT_SECRET])


@override_settings(ROOT_URLCONF=__name__)
def test_a_database_error_during_the_callback(
    connector_client: Client, fake_hubspot: FakeHubSpot, reports: Reports
) -> None:
    issued: list[dict[str, Any]] = []
    original = fake_hubspot.handle

    def recording(*args: Any, **kwargs: Any) -> Any:
        answer = original(*args, **kwargs)
        if args[1].endswith("/token") and answer.status == 200:
            issued.append(answer.json())
        return answer

    fake_hubspot.handle = recording  # type: ignore[method-assign]

    def no_writes(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE")) and "hubspot" in sql:
            raise OperationalError("disk I/O error")
        return execute(sql, params, many, context)

    callbacks = []
    for _ in range(2):  # one for the DEBUG page, one for the email: a code is single use
        start = connector_client.post(reverse("hubspot_connect:connect"))
        callbacks.append(fake_hubspot.approve(start["Location"]))
    codes = [parse_qs(urlsplit(url).query)["code"][0] for url in callbacks]
    urls = iter(callbacks)
    connector_client.raise_request_exception = False
    with db_connection.execute_wrapper(no_writes):
        found = reports.collect(lambda: connector_client.get(next(urls)))
    assert "disk I/O error" in found["debug page"]
    assert len(issued) == 2
    secrets = [settings.HUBSPOT_CLIENT_SECRET, *codes]
    secrets += [answer[key] for answer in issued for key in ("access_token", "refresh_token")]
    assert_clean(found, secrets)
    assert "[redacted]" in found["debug page"]
