"""ConnectView and CallbackView: the browser flow as a user and a site owner see it."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import responses
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection as db_connection
from django.http import HttpRequest
from django.test import Client, override_settings
from django.utils import timezone

from hubspot_connect import state as state_module
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.signals import hubspot_connected
from hubspot_connect.state import SESSION_KEY
from hubspot_connect.testing import FakeHubSpot

pytestmark = pytest.mark.django_db
CONNECT = "/hubspot/connect/"
CALLBACK = "/hubspot/callback/"
PORTAL = 12345678
OTHER_PORTAL = 87654321


def allow_staff(request: HttpRequest) -> bool:
    return bool(request.user.is_staff)


def allow_everyone(request: HttpRequest) -> bool:
    return True


def start(client: Client, next_url: str | None = None, portal: int | None = None) -> str:
    """POST the connect view's form; the authorize URL it sends the browser to."""
    form = {key: str(value) for key, value in (("next", next_url), ("portal", portal)) if value}
    response = client.post(CONNECT, form)
    assert response.status_code == 302, response.content
    return str(response["Location"])


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def callback_with(authorize_url: str, **params: str) -> str:
    """A callback URL for the flow of ``authorize_url``, with the given parameters."""
    state = query(authorize_url)["state"]
    return CALLBACK + "?" + urlencode({"state": state, **params})


@pytest.fixture
def signals() -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    hubspot_connected.connect(receiver)
    yield received
    hubspot_connected.disconnect(receiver)


def assert_nothing_stored(fake: FakeHubSpot, *, requests: int = 0) -> None:
    assert not HubSpotConnection.objects.exists()
    assert len(fake.requests) == requests


# -- the happy path ------------------------------------------------------------------------


def test_connect_sends_the_browser_to_hubspots_consent_screen(connector_client):
    location = start(connector_client)
    assert location.startswith("https://app.hubspot.com/oauth/authorize?")
    params = query(location)
    assert params["client_id"] == settings.HUBSPOT_CLIENT_ID
    assert params["redirect_uri"] == settings.HUBSPOT_REDIRECT_URI
    assert params["scope"] == "oauth crm.objects.contacts.read"
    assert params["optional_scope"] == "crm.objects.deals.read"
    assert params["state"] in connector_client.session[SESSION_KEY]
    assert settings.HUBSPOT_CLIENT_SECRET not in location


def test_happy_path_stores_the_portal_and_redirects_to_next(
    connector_client, connector, fake_hubspot, signals
):
    before = timezone.now()
    authorize = start(connector_client, next_url="/reports/?tab=hubspot")
    response = connector_client.get(fake_hubspot.approve(authorize, portal_id=PORTAL))
    assert response.status_code == 302
    assert response["Location"] == "/reports/?tab=hubspot"
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        f"HubSpot portal {PORTAL} is now connected."
    ]
    row = HubSpotConnection.objects.get()
    assert row.portal_id == PORTAL
    assert row.hub_domain == "demo-company.hubspot.com"
    assert row.hublet == "na1"
    assert row.hubspot_user_id == 4101
    assert row.hubspot_user_email == "owner@demo-company.example"
    assert row.connected_by == connector
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert set(row.scopes) == {"oauth", "crm.objects.contacts.read", "crm.objects.deals.read"}
    assert fake_hubspot.is_issued_access_token(row.access_token)
    assert fake_hubspot.is_live_refresh_token(row.refresh_token)
    assert (
        before + timedelta(seconds=1790)
        <= row.expires_at
        <= timezone.now() + timedelta(seconds=1800)
    )
    assert [(s["created"], s["connection"].pk) for s in signals] == [(True, row.pk)]
    assert signals[0]["sender"] is HubSpotConnection
    assert signals[0]["request"].path == CALLBACK
    assert connector_client.session[SESSION_KEY] == {}


def test_tokens_are_encrypted_in_the_database_row(connect_portal_via_views):
    connect_portal_via_views()
    row = HubSpotConnection.objects.get()
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM hubspot_connect_hubspotconnection")
        raw_access, raw_refresh = cursor.fetchone()
    assert row.access_token not in raw_access
    assert row.refresh_token not in raw_refresh
    fernet = Fernet(settings.FIELD_ENCRYPTION_KEY)
    assert fernet.decrypt(raw_access.encode()).decode() == row.access_token
    assert fernet.decrypt(raw_refresh.encode()).decode() == row.refresh_token


def test_without_next_the_user_lands_on_the_success_url(connect_portal_via_views):
    with override_settings(HUBSPOT_SUCCESS_URL="/connected/"):
        assert connect_portal_via_views()["Location"] == "/connected/"


def test_success_url_may_be_a_url_name(connect_portal_via_views):
    with override_settings(HUBSPOT_SUCCESS_URL="admin:index"):
        assert connect_portal_via_views()["Location"] == "/admin/"


def test_default_success_url_is_the_site_root(connect_portal_via_views):
    assert connect_portal_via_views()["Location"] == "/"


def test_an_off_site_next_is_ignored(connect_portal_via_views):
    with override_settings(HUBSPOT_SUCCESS_URL="/connected/"):
        response = connect_portal_via_views(next_url="https://evil.example/")
    assert response["Location"] == "/connected/"


def test_next_may_come_in_a_post_body(connector_client, fake_hubspot):
    response = connector_client.post(CONNECT, {"next": "/from-form/"})
    assert response.status_code == 302
    done = connector_client.get(fake_hubspot.approve(response["Location"]))
    assert done["Location"] == "/from-form/"


def test_reconnecting_updates_the_row_and_reactivates_it(
    connector_client, fake_hubspot, signals, connect_portal_via_views
):
    connect_portal_via_views()
    first = HubSpotConnection.objects.get()
    HubSpotConnection.objects.filter(pk=first.pk).update(
        status=HubSpotConnection.Status.NEEDS_REAUTH,
        refresh_failures=3,
        last_error="invalid_grant",
        last_error_at=timezone.now(),
    )
    response = connect_portal_via_views()
    assert response.status_code == 302
    # The first flow's message was never shown (its redirect was not followed).
    assert [str(m) for m in get_messages(response.wsgi_request)][-1] == (
        f"HubSpot portal {PORTAL} was reconnected."
    )
    row = HubSpotConnection.objects.get()
    assert row.pk == first.pk
    assert row.status == HubSpotConnection.Status.ACTIVE
    assert (row.refresh_failures, row.last_error, row.last_error_at) == (0, "", None)
    assert row.access_token != first.access_token
    assert row.refresh_token != first.refresh_token
    assert [s["created"] for s in signals] == [True, False]


def test_one_user_connects_two_portals(connect_portal_via_views, connector):
    connect_portal_via_views(portal_id=PORTAL)
    connect_portal_via_views(portal_id=OTHER_PORTAL)
    rows = list(HubSpotConnection.objects.order_by("portal_id"))
    assert [r.portal_id for r in rows] == [PORTAL, OTHER_PORTAL]
    assert [r.hublet for r in rows] == ["na1", "eu1"]
    assert {r.connected_by for r in rows} == {connector}
    assert rows[0].access_token != rows[1].access_token


def test_two_tabs_connect_two_portals(connector_client, fake_hubspot):
    first_tab = start(connector_client, next_url="/one/")
    second_tab = start(connector_client, next_url="/two/")
    done_two = connector_client.get(fake_hubspot.approve(second_tab, portal_id=OTHER_PORTAL))
    done_one = connector_client.get(fake_hubspot.approve(first_tab, portal_id=PORTAL))
    assert (done_one["Location"], done_two["Location"]) == ("/one/", "/two/")
    assert HubSpotConnection.objects.count() == 2


@override_settings(HUBSPOT_REDIRECT_URI=None)
def test_redirect_uri_is_built_from_the_request_when_unset(connector_client, fake_hubspot):
    authorize = start(connector_client)
    assert query(authorize)["redirect_uri"] == "http://testserver/hubspot/callback/"
    callback = fake_hubspot.approve(authorize)
    response = connector_client.get(callback)
    assert response.status_code == 302
    (token_call,) = [form for _, path, form in fake_hubspot.requests if path.endswith("/token")]
    assert token_call["redirect_uri"] == "http://testserver/hubspot/callback/"


def test_the_callback_uses_the_redirect_uri_its_flow_started_with(connector_client, fake_hubspot):
    authorize = start(connector_client)
    callback = fake_hubspot.approve(authorize)
    with override_settings(HUBSPOT_REDIRECT_URI="https://changed.example/cb/"):
        response = connector_client.get(callback)
    assert response.status_code == 302
    assert HubSpotConnection.objects.count() == 1


# -- who may connect -----------------------------------------------------------------------


def test_anonymous_users_are_sent_to_log_in(client, fake_hubspot):
    response = client.get(CONNECT + "?next=/after/")
    assert response.status_code == 302
    login = urlsplit(response["Location"])
    assert login.path == settings.LOGIN_URL
    assert query(response["Location"])["next"] == "/hubspot/connect/?next=/after/"
    assert SESSION_KEY not in client.session


def test_users_without_the_permission_get_403(client, fake_hubspot):
    client.force_login(User.objects.create_user("nobody"))
    response = client.get(CONNECT)
    assert response.status_code == 403
    assert SESSION_KEY not in client.session


def test_users_who_lost_the_permission_cannot_finish(connector_client, connector, fake_hubspot):
    callback = fake_hubspot.approve(start(connector_client))
    connector.user_permissions.clear()
    response = connector_client.get(callback)
    assert response.status_code == 403
    assert_nothing_stored(fake_hubspot)


@override_settings(HUBSPOT_CONNECT_PERMISSION="tests.test_views.allow_staff")
def test_custom_permission_callable_replaces_the_model_permission(client, fake_hubspot):
    staff = User.objects.create_user("staff", is_staff=True)
    client.force_login(staff)
    response = client.get(fake_hubspot.approve(start(client)))
    assert response.status_code == 302
    assert HubSpotConnection.objects.get().connected_by == staff

    holder = User.objects.create_user("holder")
    holder.user_permissions.add(Permission.objects.get(codename="add_hubspotconnection"))
    client.force_login(holder)
    assert client.get(CONNECT).status_code == 403


@override_settings(HUBSPOT_CONNECT_PERMISSION="tests.test_views.allow_everyone")
def test_a_permission_callable_may_let_anonymous_users_connect(client, fake_hubspot):
    response = client.get(fake_hubspot.approve(start(client)))
    assert response.status_code == 302
    assert HubSpotConnection.objects.get().connected_by is None


def test_other_methods_are_not_allowed(connector_client):
    assert connector_client.put(CONNECT).status_code == 405
    assert connector_client.post(CALLBACK).status_code == 405


def test_flow_responses_are_never_cached(connector_client, fake_hubspot):
    authorize_response = connector_client.get(CONNECT)
    assert "no-store" in authorize_response["Cache-Control"]
    bad = connector_client.get(CALLBACK)
    assert "no-store" in bad["Cache-Control"]


# -- a bad state: 400, nothing stored, HubSpot never asked ------------------------------------


def assert_invalid_link(response: Any) -> None:
    assert response.status_code == 400
    assert next(t.name for t in response.templates) == "hubspot_connect/callback_error.html"
    assert response.context["title"] == "This connection link is not valid"
    assert b"Start the connection again" in response.content


def test_a_replayed_callback_is_refused(connector_client, fake_hubspot):
    callback = fake_hubspot.approve(start(connector_client))
    assert connector_client.get(callback).status_code == 302
    requests_after_first = len(fake_hubspot.requests)
    replay = connector_client.get(callback)
    assert_invalid_link(replay)
    assert len(fake_hubspot.requests) == requests_after_first
    assert HubSpotConnection.objects.count() == 1


def test_a_forged_state_is_refused(connector_client, fake_hubspot):
    callback = fake_hubspot.approve(start(connector_client))
    params = query(callback)
    params["state"] = params["state"][::-1]
    assert_invalid_link(connector_client.get(CALLBACK + "?" + urlencode(params)))
    assert_nothing_stored(fake_hubspot)


def test_a_state_from_another_browser_is_refused(connector_client, connector, fake_hubspot):
    callback = fake_hubspot.approve(start(connector_client))
    other = Client()
    other.force_login(connector)
    assert_invalid_link(other.get(callback))
    assert_nothing_stored(fake_hubspot)


def test_an_expired_state_is_refused(connector_client, fake_hubspot, monkeypatch):
    callback = fake_hubspot.approve(start(connector_client))
    later = time.time() + 601
    monkeypatch.setattr(state_module, "time", SimpleNamespace(time=lambda: later))
    response = connector_client.get(callback)
    assert_invalid_link(response)
    assert "took too long" in response.content.decode()
    assert_nothing_stored(fake_hubspot)


def test_a_missing_state_is_refused(connector_client, fake_hubspot):
    callback = fake_hubspot.approve(start(connector_client))
    params = query(callback)
    del params["state"]
    assert_invalid_link(connector_client.get(CALLBACK + "?" + urlencode(params)))
    assert_nothing_stored(fake_hubspot)
    assert len(connector_client.session[SESSION_KEY]) == 1


# -- what HubSpot's redirect can carry ---------------------------------------------------------


def test_declined_consent_renders_a_friendly_page(connector_client, fake_hubspot):
    response = connector_client.get(fake_hubspot.decline(start(connector_client)))
    assert response.status_code == 400
    assert next(t.name for t in response.templates) == "hubspot_connect/declined.html"
    assert response.context["cancelled"] is True
    content = response.content.decode()
    assert "You did not connect HubSpot" in content
    assert "access_denied" in content
    assert f'href="{CONNECT}"' in content
    assert_nothing_stored(fake_hubspot)
    assert connector_client.session[SESSION_KEY] == {}


def test_another_authorization_error_is_told_apart_from_a_decline(connector_client, fake_hubspot):
    authorize = start(connector_client)
    response = connector_client.get(
        callback_with(authorize, error="invalid_scope", error_description="<b>bad</b> scope")
    )
    assert response.status_code == 400
    assert response.context["cancelled"] is False
    content = response.content.decode()
    assert "HubSpot did not grant access" in content
    assert "&lt;b&gt;bad&lt;/b&gt; scope" in content
    assert_nothing_stored(fake_hubspot)


def test_a_decline_with_an_unknown_state_is_still_refused(connector_client, fake_hubspot):
    start(connector_client)
    response = connector_client.get(CALLBACK + "?error=access_denied&state=unknown")
    assert_invalid_link(response)


def test_code_and_error_together_are_refused(connector_client, fake_hubspot):
    callback = fake_hubspot.approve(start(connector_client))
    response = connector_client.get(callback + "&error=access_denied")
    assert response.status_code == 400
    assert "both a code and an error" in response.content.decode()
    assert_nothing_stored(fake_hubspot)


def test_a_callback_without_code_is_refused(connector_client, fake_hubspot):
    response = connector_client.get(callback_with(start(connector_client)))
    assert response.status_code == 400
    assert "no authorization code" in response.content.decode()
    assert_nothing_stored(fake_hubspot)


@pytest.mark.parametrize("repeated", ["state", "code", "error", "error_description"])
def test_repeated_parameters_are_refused_before_the_state_is_used(
    connector_client, fake_hubspot, repeated
):
    callback = fake_hubspot.approve(start(connector_client))
    response = connector_client.get(callback + f"&{repeated}=again&{repeated}=twice")
    assert response.status_code == 400
    assert f"repeats the {repeated} parameter" in response.content.decode()
    assert_nothing_stored(fake_hubspot)
    # The genuine callback still works: the refused one used nothing up.
    assert connector_client.get(callback).status_code == 302


# -- HubSpot refusing or failing the code exchange ----------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        pytest.param({"kind": "invalid_grant"}, 400, id="invalid_grant"),
        pytest.param({"kind": "status", "status": 500}, 502, id="500"),
        pytest.param({"kind": "status", "status": 503}, 502, id="503"),
        pytest.param({"kind": "status", "status": 429, "retry_after": 10}, 502, id="429"),
        pytest.param({"kind": "status", "status": 400}, 502, id="400-other"),
        pytest.param({"kind": "timeout"}, 502, id="timeout"),
        pytest.param({"kind": "reset"}, 502, id="connection-reset"),
        pytest.param({"kind": "non_json"}, 502, id="non-json"),
        pytest.param({"kind": "truncated"}, 502, id="truncated-json"),
        pytest.param({"kind": "missing_fields"}, 502, id="missing-fields"),
    ],
)
def test_a_failed_exchange_renders_the_error_page_and_stores_nothing(
    connector_client, fake_hubspot, caplog, fault, status
):
    callback = fake_hubspot.approve(start(connector_client))
    fake_hubspot.fail(**fault)
    response = connector_client.get(callback)
    assert response.status_code == status
    assert next(t.name for t in response.templates) == "hubspot_connect/callback_error.html"
    assert f"HTTP status {status}" in response.content.decode()
    assert_nothing_stored(fake_hubspot, requests=1)
    levels = {r.levelno for r in caplog.records if r.name == "hubspot_connect.views"}
    assert (logging.ERROR if status == 502 else logging.WARNING) in levels


def test_an_expired_code_is_invalid_grant(connector_client, fake_hubspot):
    callback = fake_hubspot.approve(start(connector_client))
    fake_hubspot.clock = lambda: time.time() + fake_hubspot.code_lifetime + 1
    response = connector_client.get(callback)
    assert response.status_code == 400
    assert "may have expired" in response.content.decode()
    assert not HubSpotConnection.objects.exists()


def test_wrong_client_credentials_are_a_502(connector_client, fake_hubspot):
    callback = fake_hubspot.approve(start(connector_client))
    fake_hubspot.client_secret = "rotated-at-hubspot"
    response = connector_client.get(callback)
    assert response.status_code == 502
    assert response.context["title"] == "HubSpot did not answer as expected"
    assert not HubSpotConnection.objects.exists()


def test_failed_introspection_keeps_a_connection_whose_portal_is_known(
    connector_client, fake_hubspot
):
    callback = fake_hubspot.approve(start(connector_client), portal_id=OTHER_PORTAL)
    fake_hubspot.fail("status", status=500, endpoint="introspect")
    response = connector_client.get(callback)
    assert response.status_code == 302
    row = HubSpotConnection.objects.get()
    assert row.portal_id == OTHER_PORTAL
    assert row.hub_domain == ""
    assert row.hublet == "eu1"  # from the refresh token's prefix
    assert row.hubspot_user_id == 4202


def test_failed_introspection_without_token_metadata_is_a_502(connector_client):
    with FakeHubSpot(include_token_metadata=False) as hubspot:
        callback = hubspot.approve(start(connector_client))
        hubspot.fail("timeout", endpoint="introspect")
        response = connector_client.get(callback)
    assert response.status_code == 502
    assert not HubSpotConnection.objects.exists()
    assert [path for _, path, _ in hubspot.requests] == [
        "/oauth/2026-03/token",
        "/oauth/2026-03/token/introspect",
    ]


def test_without_token_metadata_the_portal_comes_from_introspection(connector_client):
    with FakeHubSpot(include_token_metadata=False) as hubspot:
        response = connector_client.get(
            hubspot.approve(start(connector_client), portal_id=OTHER_PORTAL)
        )
    assert response.status_code == 302
    row = HubSpotConnection.objects.get()
    assert (row.portal_id, row.hub_domain, row.hubspot_user_id) == (
        OTHER_PORTAL,
        "acme-europe.hubspot.com",
        4202,
    )
    assert row.scopes == ["oauth", "crm.objects.contacts.read", "crm.objects.deals.read"]


def test_no_portal_in_any_answer_is_a_502(connector_client):
    authorize = start(connector_client)
    base = "https://api.hubapi.com/oauth/2026-03/token"
    with responses.RequestsMock() as rsps:
        rsps.post(base, json={"access_token": "Cx", "refresh_token": "r-1", "expires_in": 60})
        rsps.post(base + "/introspect", json={"active": False})
        response = connector_client.get(callback_with(authorize, code="some-code"))
    assert response.status_code == 502
    assert not HubSpotConnection.objects.exists()


# -- nothing secret on any page or in any log line --------------------------------------------


def test_no_token_code_or_secret_in_pages_or_logs(connector_client, fake_hubspot, caplog):
    caplog.set_level(logging.DEBUG)
    secret = settings.HUBSPOT_CLIENT_SECRET
    pages: list[str] = []
    codes: list[str] = []

    def visit(url: str) -> Any:
        response = connector_client.get(url)
        pages.append(response.content.decode() + json.dumps(dict(response.items())))
        return response

    ok = fake_hubspot.approve(start(connector_client))
    codes.append(query(ok)["code"])
    visit(ok)
    visit(ok)  # replay
    for fault in ({"kind": "invalid_grant"}, {"kind": "status", "status": 500}):
        failing = fake_hubspot.approve(start(connector_client))
        codes.append(query(failing)["code"])
        fake_hubspot.fail(**fault)
        visit(failing)
    mixed = fake_hubspot.approve(start(connector_client))
    codes.append(query(mixed)["code"])
    visit(mixed + "&error=access_denied")

    # HubSpot echoing the code and secret back in an error body.
    echoed = fake_hubspot.approve(start(connector_client))
    code = query(echoed)["code"]
    codes.append(code)
    fake_hubspot.stop()
    with responses.RequestsMock() as rsps:
        rsps.post(
            "https://api.hubapi.com/oauth/2026-03/token",
            status=400,
            json={"error": "invalid_grant", "error_description": f"{code} / {secret}"},
        )
        visit(echoed)
    fake_hubspot.start()

    row = HubSpotConnection.objects.get()
    secrets = [secret, row.access_token, row.refresh_token, *codes]
    texts = pages + [r.getMessage() for r in caplog.records]
    assert any("HubSpot rejected" in t for t in texts)
    for text in texts:
        for value in secrets:
            assert value not in text


def test_forged_callback_is_a_400_even_for_an_anonymous_user(client) -> None:
    """A bad state is reported as such for everyone; permission only matters afterwards."""
    response = client.get("/hubspot/callback/", {"state": "forged", "code": "whatever"})
    assert response.status_code == 400
    assert b"not valid" in response.content or b"state" in response.content


@pytest.mark.parametrize("fault", [{"kind": "status", "status": 503}, {"kind": "invalid_grant"}])
def test_callback_errors_never_reach_django_request_logger_or_admin_email(
    connector_client, fake_hubspot, caplog, settings, mailoutbox, fault
) -> None:
    """Django would log (and by default email to ADMINS) the request, code in its URL."""
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.LOGGING = {  # Django's default: errors of django.request go to mail_admins
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"mail_admins": {"class": "django.utils.log.AdminEmailHandler"}},
        "loggers": {"django.request": {"handlers": ["mail_admins"], "level": "ERROR"}},
    }
    import logging.config

    logging.config.dictConfig(settings.LOGGING)
    try:
        start = connector_client.post("/hubspot/connect/")
        callback = fake_hubspot.approve(start["Location"])
        fake_hubspot.fail(**fault)
        with caplog.at_level(logging.DEBUG):
            response = connector_client.get(callback)
    finally:
        logging.getLogger("django.request").handlers.clear()
    assert response.status_code in (400, 502)
    assert [r for r in caplog.records if r.name == "django.request"] == []
    assert mailoutbox == []
    code = callback.split("code=")[1].split("&")[0]
    assert all(code not in record.getMessage() for record in caplog.records)


# -- starting a flow: GET confirms, only a CSRF-checked POST starts -------------------------------


def test_get_shows_a_confirmation_form_and_starts_nothing(connector_client, fake_hubspot):
    response = connector_client.get(CONNECT + "?next=/reports/&portal=87654321")
    assert response.status_code == 200
    assert next(t.name for t in response.templates) == "hubspot_connect/connect.html"
    html = response.content.decode()
    assert '<form method="post" action="/hubspot/connect/">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<input type="hidden" name="next" value="/reports/">' in html
    assert '<input type="hidden" name="portal" value="87654321">' in html
    assert "Reconnect HubSpot portal 87654321" in html
    assert '<button type="submit" class="button primary">Connect HubSpot</button>' in html
    assert "no-store" in response["Cache-Control"]
    assert response["X-Frame-Options"] == "DENY"  # no clickjacking of its button
    assert SESSION_KEY not in connector_client.session
    assert fake_hubspot.requests == []


def test_confirmation_page_without_parameters(connector_client):
    html = connector_client.get(CONNECT).content.decode()
    assert "<h1>Connect HubSpot</h1>" in html
    assert 'name="next"' not in html
    assert 'name="portal"' not in html
    assert '<a href="/">Cancel</a>' in html


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/", "//evil.example", '/"><script>x()</script>']
)
def test_confirmation_page_carries_only_a_safe_next(connector_client, next_url):
    html = connector_client.get(CONNECT, {"next": next_url}).content.decode()
    if next_url.startswith('/"'):
        assert "<script>x()" not in html  # escaped, never markup
        assert "&lt;script&gt;" in html
    else:
        assert "evil.example" not in html


def test_confirmation_page_drops_an_overlong_next(connector_client):
    html = connector_client.get(CONNECT, {"next": "/" + "a" * 2000}).content.decode()
    assert 'name="next"' not in html
    assert (
        'name="next"' in connector_client.get(CONNECT, {"next": "/" + "a" * 1999}).content.decode()
    )


def test_confirmation_form_posts_and_starts_the_flow(fake_hubspot, connector):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(connector)
    page = browser.get(CONNECT + "?next=/from-form/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token
    response = browser.post(
        CONNECT, {"csrfmiddlewaretoken": token.group(1), "next": "/from-form/"}
    )
    assert response.status_code == 302
    assert response["Location"].startswith("https://app.hubspot.com/oauth/authorize?")
    done = browser.get(fake_hubspot.approve(response["Location"]))
    assert done["Location"] == "/from-form/"
    assert HubSpotConnection.objects.get().connected_by == connector


def test_a_post_without_the_csrf_token_is_refused(connector):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(connector)
    response = browser.post(CONNECT, {"next": "/x/"})
    assert response.status_code == 403
    assert SESSION_KEY not in browser.session


@override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if "CsrfViewMiddleware" not in m])
def test_the_post_is_csrf_checked_even_without_the_csrf_middleware(connector):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(connector)
    assert browser.post(CONNECT).status_code == 403
    assert SESSION_KEY not in browser.session


def test_get_requests_cannot_push_a_pending_flow_out(connector_client, fake_hubspot):
    """The attack of issue 12.2: forced navigations used to evict the real pending flow."""
    authorize = start(connector_client, next_url="/mine/")
    for _ in range(10):
        assert connector_client.get(CONNECT).status_code == 200
    assert len(connector_client.session[SESSION_KEY]) == 1
    done = connector_client.get(fake_hubspot.approve(authorize))
    assert done["Location"] == "/mine/"


@override_settings(HUBSPOT_CONNECT_ON_GET=True)
def test_connect_on_get_starts_the_flow_on_get(connector_client, fake_hubspot):
    response = connector_client.get(CONNECT + "?next=/x/&portal=87654321")
    assert response.status_code == 302
    assert response["Location"].startswith("https://app.hubspot.com/oauth/87654321/authorize?")
    assert connector_client.get(fake_hubspot.approve(response["Location"]))["Location"] == "/x/"


@pytest.mark.parametrize("value", ["True", "1", 1, "yes"])
def test_only_a_real_true_turns_connect_on_get_on(connector_client, value):
    with override_settings(HUBSPOT_CONNECT_ON_GET=value):
        assert connector_client.get(CONNECT).status_code == 200  # check E017 flags it


def test_anonymous_post_goes_to_log_in_and_back_to_the_confirmation(client):
    response = client.post(CONNECT, {"next": "/after/", "portal": "123"})
    assert response.status_code == 302
    assert urlsplit(response["Location"]).path == settings.LOGIN_URL
    assert query(response["Location"])["next"] == "/hubspot/connect/?next=/after/&portal=123"
    assert SESSION_KEY not in client.session


def test_users_without_the_permission_get_403_on_post_too(client):
    client.force_login(User.objects.create_user("nobody"))
    assert client.post(CONNECT, {"portal": "123"}).status_code == 403
    assert SESSION_KEY not in client.session


# -- reconnect in place: ?portal= opens HubSpot's consent screen for that account -----------------


def test_portal_opens_the_consent_screen_for_that_account(connector_client):
    authorize = start(connector_client, portal=OTHER_PORTAL)
    parts = urlsplit(authorize)
    assert (parts.netloc, parts.path) == ("app.hubspot.com", f"/oauth/{OTHER_PORTAL}/authorize")
    assert query(authorize)["scope"] == "oauth crm.objects.contacts.read"
    flow = connector_client.session[SESSION_KEY][query(authorize)["state"]]
    assert flow["portal_id"] == OTHER_PORTAL


def test_portal_may_come_in_the_query_string_of_the_post(connector_client):
    response = connector_client.post(CONNECT + f"?portal={OTHER_PORTAL}")
    assert urlsplit(response["Location"]).path == f"/oauth/{OTHER_PORTAL}/authorize"


def test_an_empty_portal_is_no_portal(connector_client):
    assert urlsplit(start(connector_client, portal=None)).path == "/oauth/authorize"
    response = connector_client.post(CONNECT, {"portal": ""})
    assert urlsplit(response["Location"]).path == "/oauth/authorize"


@pytest.mark.parametrize(
    "value",
    ["abc", "0", "-5", "007", "1.5", "1e3", " 12", "12 ", "\u0661\u0662", "1" * 19, "12&x=1"],
)
def test_a_malformed_portal_is_a_400_and_starts_nothing(connector_client, fake_hubspot, value):
    for response in (
        connector_client.get(CONNECT, {"portal": value}),
        connector_client.post(CONNECT, {"portal": value}),
    ):
        assert response.status_code == 400
        assert "The portal parameter must be a HubSpot portal id" in response.content.decode()
        assert f'href="{CONNECT}"' in response.content.decode()
    assert SESSION_KEY not in connector_client.session


def test_reconnecting_the_requested_portal_says_so(
    connector_client, fake_hubspot, make_connection
):
    make_connection(PORTAL, status=HubSpotConnection.Status.NEEDS_REAUTH)
    authorize = start(connector_client, portal=PORTAL, next_url="/portals/")
    response = connector_client.get(fake_hubspot.approve(authorize))  # preselected: PORTAL
    assert response["Location"] == "/portals/"
    assert [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)] == [
        ("success", f"HubSpot portal {PORTAL} was reconnected.")
    ]
    assert HubSpotConnection.objects.get(portal_id=PORTAL).is_active


def test_another_portal_chosen_at_hubspot_is_kept_with_a_warning(
    connector_client, fake_hubspot, make_connection, caplog
):
    make_connection(PORTAL, status=HubSpotConnection.Status.NEEDS_REAUTH)
    authorize = start(connector_client, portal=PORTAL, next_url="/portals/")
    callback = fake_hubspot.approve(authorize, portal_id=OTHER_PORTAL)
    with caplog.at_level(logging.INFO, logger="hubspot_connect.views"):
        response = connector_client.get(callback)
    assert response.status_code == 302
    assert response["Location"] == "/portals/"
    assert [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)] == [
        (
            "warning",
            f"HubSpot portal {OTHER_PORTAL} was connected instead of portal {PORTAL}: another "
            f"account was chosen on HubSpot's consent screen. Portal {PORTAL} still needs "
            "reconnecting.",
        )
    ]
    # What the user approved is stored; the portal asked for is left as it was.
    other = HubSpotConnection.objects.get(portal_id=OTHER_PORTAL)
    assert other.is_active
    assert fake_hubspot.is_live_refresh_token(other.refresh_token)
    requested = HubSpotConnection.objects.get(portal_id=PORTAL)
    assert requested.status == HubSpotConnection.Status.NEEDS_REAUTH
    assert f"Asked to reconnect portal {PORTAL}, HubSpot connected portal {OTHER_PORTAL}" in (
        caplog.text
    )


def test_declining_a_reconnect_offers_to_try_that_portal_again(connector_client, fake_hubspot):
    response = connector_client.get(
        fake_hubspot.decline(start(connector_client, portal=PORTAL, next_url="/portals/"))
    )
    assert response.status_code == 400
    retry = f"{CONNECT}?next=/portals/&amp;portal={PORTAL}"
    assert f'href="{retry}"' in response.content.decode()
    page = connector_client.get(f"{CONNECT}?next=/portals/&portal={PORTAL}")
    assert f'name="portal" value="{PORTAL}"' in page.content.decode()


def test_the_portal_of_one_flow_does_not_leak_into_another(connector_client, fake_hubspot):
    for_portal = start(connector_client, portal=PORTAL)
    plain = start(connector_client)
    plain_done = connector_client.get(fake_hubspot.approve(plain, portal_id=OTHER_PORTAL))
    assert [m.level_tag for m in get_messages(plain_done.wsgi_request)] == ["success"]
    done = connector_client.get(fake_hubspot.approve(for_portal, portal_id=OTHER_PORTAL))
    # The first flow's message was never shown (its redirect was not followed).
    assert [m.level_tag for m in get_messages(done.wsgi_request)] == ["success", "warning"]


# -- a used state stays used, whatever the session engine --------------------------------------


@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
def test_replaying_a_signed_cookie_session_does_not_revive_a_used_state(connector, fake_hubspot):
    browser = Client()
    browser.force_login(connector)  # a session in the cookie, under this engine
    authorize = start(browser)
    callback = fake_hubspot.approve(authorize)
    before = browser.cookies[settings.SESSION_COOKIE_NAME].value
    assert browser.get(callback).status_code == 302
    assert browser.cookies[settings.SESSION_COOKIE_NAME].value != before  # the state left it
    browser.cookies[settings.SESSION_COOKIE_NAME] = before  # the attacker puts it back
    assert query(authorize)["state"] in browser.session[SESSION_KEY]
    requests_before = len(fake_hubspot.requests)
    replay = browser.get(callback)
    assert_invalid_link(replay)
    assert "already used" in replay.content.decode()
    assert len(fake_hubspot.requests) == requests_before  # HubSpot was never asked again
    assert HubSpotConnection.objects.count() == 1
