"""hubspot_connect.fake_server: FakeHubSpot served by Django views, driven over HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import responses
from django.test import Client, override_settings
from django.urls import include, path

from hubspot_connect import fake_server
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.testing import FakeHubSpot, FileStore
from hubspot_connect.tokens import api_session

urlpatterns = [
    path("hubspot/", include("hubspot_connect.urls")),
    path("fake-hubspot/", include("hubspot_connect.fake_server")),
]

AUTHORIZE = "/fake-hubspot/oauth/authorize"
API = "/fake-hubspot/api"
REDIRECT_URI = "http://testserver/hubspot/callback/"
CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret-8d1f0c"


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "fake" / "state.json"


@pytest.fixture(autouse=True)
def fake_settings(store_path: Path) -> Iterator[None]:
    with override_settings(
        ROOT_URLCONF=__name__,
        HUBSPOT_AUTHORIZE_URL="http://testserver" + AUTHORIZE,
        HUBSPOT_API_BASE_URL="http://testserver" + API,
        HUBSPOT_REDIRECT_URI=REDIRECT_URI,
        HUBSPOT_FAKE_STORE=str(store_path),
    ):
        yield


@pytest.fixture
def over_http(db: None) -> Iterator[responses.RequestsMock]:
    """Route the app's ``requests`` calls to the fake's views through Django's test client."""
    server = Client()

    def forward(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(request.url or "")
        body = request.body or b""
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in ("content-type", "content-length")
        }
        answer = server.generic(
            request.method or "GET",
            parts.path + ("?" + parts.query if parts.query else ""),
            data=body.encode() if isinstance(body, str) else body,
            content_type=request.headers.get("Content-Type", ""),
            headers=headers,
        )
        return answer.status_code, dict(answer.headers), answer.content

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(
            responses.GET, re.compile(r"http://testserver/fake-hubspot/api/.*"), forward
        )
        mock.add_callback(
            responses.POST, re.compile(r"http://testserver/fake-hubspot/api/.*"), forward
        )
        yield mock


def authorize_url(**overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "oauth crm.objects.contacts.read",
        "optional_scope": "crm.objects.deals.read",
        "state": "s-123",
    }
    params.update(overrides)
    return AUTHORIZE + "?" + urlencode({k: v for k, v in params.items() if v is not None})


# -- the consent page ---------------------------------------------------------------------


def test_consent_page_shows_scopes_portals_and_both_buttons(client: Client) -> None:
    response = client.get(authorize_url())
    assert response.status_code == 200
    html = response.content.decode()
    assert "Fake HubSpot: approve access for portal" in html
    assert "12345678" in html
    assert "87654321" in html
    assert "demo-company.hubspot.com" in html
    assert "crm.objects.contacts.read" in html
    assert "crm.objects.deals.read" in html
    assert 'value="approve"' in html
    assert 'value="decline"' in html
    assert "csrfmiddlewaretoken" in html
    assert "s-123" in html  # the form posts back to the same URL, state included


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"client_id": None}, "has no client_id"),
        ({"client_id": "someone-else"}, "is not one of this fake"),
        ({"redirect_uri": None}, "not an absolute http(s) URL"),
        ({"redirect_uri": "/hubspot/callback/"}, "not an absolute http(s) URL"),
        ({"redirect_uri": "javascript:alert(1)"}, "not an absolute http(s) URL"),
        ({"redirect_uri": "http://testserver/elsewhere/"}, "does not match"),
        ({"scope": "crm.objects.contacts.read"}, "'oauth' scope"),
        ({"state": None}, "no state"),
    ],
)
def test_consent_page_refuses_a_bad_authorize_url(
    client: Client, overrides: dict[str, str | None], message: str
) -> None:
    url = authorize_url(**overrides)
    approve = {"action": "approve", "portal_id": "12345678"}
    for response in (client.get(url), client.post(url, approve)):
        assert response.status_code == 400
        html = response.content.decode()
        assert "This authorization link is not valid" in html
        assert message.replace("'", "&#x27;") in html
        assert "Location" not in response


def test_without_a_registered_redirect_uri_only_this_site_is_allowed(client: Client) -> None:
    with override_settings(HUBSPOT_REDIRECT_URI=None):
        evil = client.get(authorize_url(redirect_uri="https://evil.example/steal"))
        assert evil.status_code == 400
        assert "points to another site" in evil.content.decode()
        ours = client.get(authorize_url(redirect_uri="http://testserver/somewhere/"))
        assert ours.status_code == 200


def test_approve_redirects_with_a_single_use_code_and_the_state(
    client: Client, store_path: Path
) -> None:
    response = client.post(authorize_url(), {"action": "approve", "portal_id": "87654321"})
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s-123"]
    (code,) = query["code"]
    assert code.startswith("eu1-")  # the chosen portal's hublet
    stored = json.loads(store_path.read_text())
    assert stored["codes"][code]["portal_id"] == 87654321
    assert stored["codes"][code]["scopes"] == [
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.deals.read",
    ]


def test_decline_redirects_with_access_denied(client: Client, store_path: Path) -> None:
    response = client.post(authorize_url(), {"action": "decline"})
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query == {
        "error": ["access_denied"],
        "error_description": ["The user declined to grant access."],
        "state": ["s-123"],
    }
    assert not store_path.exists() or "codes" not in json.loads(store_path.read_text())


@pytest.mark.parametrize(
    "data",
    [
        {"action": "approve", "portal_id": "11111111"},
        {"action": "approve", "portal_id": "not-a-number"},
        {"action": "approve"},
        {"portal_id": "12345678"},
        {"action": "delete", "portal_id": "12345678"},
    ],
)
def test_approve_needs_a_known_portal_and_an_action(client: Client, data: dict[str, str]) -> None:
    response = client.post(authorize_url(), data)
    assert response.status_code == 400
    assert "Choose a portal" in response.content.decode()


def test_consent_form_is_csrf_protected() -> None:
    response = Client(enforce_csrf_checks=True).post(
        authorize_url(), {"action": "approve", "portal_id": "12345678"}
    )
    assert response.status_code == 403


def test_consent_answers_405_to_other_methods(client: Client) -> None:
    response = client.put(authorize_url())
    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"


def portal_authorize_url(portal_id: int, **overrides: str | None) -> str:
    return authorize_url(**overrides).replace(
        AUTHORIZE, f"/fake-hubspot/oauth/{portal_id}/authorize"
    )


def selected_portal(html: str) -> str:
    (selected,) = re.findall(r'name="portal_id" value="(\d+)" checked', html)
    return selected


def test_consent_page_for_one_portal_preselects_it(client: Client) -> None:
    assert selected_portal(client.get(authorize_url()).content.decode()) == "12345678"
    response = client.get(portal_authorize_url(87654321))
    assert response.status_code == 200
    html = response.content.decode()
    assert selected_portal(html) == "87654321"
    assert "approve access for portal <span data-portal>87654321</span>" in html
    assert "12345678" in html  # the other portal can still be chosen


def test_consent_page_for_an_unknown_portal_lets_the_user_choose(client: Client) -> None:
    response = client.get(portal_authorize_url(11111111))
    assert response.status_code == 200
    assert selected_portal(response.content.decode()) == "12345678"


def test_consent_page_for_one_portal_approves_what_the_user_picks(
    client: Client, store_path: Path
) -> None:
    url = portal_authorize_url(87654321)
    for picked in ("87654321", "12345678"):
        response = client.post(url, {"action": "approve", "portal_id": picked})
        assert response.status_code == 302
        (code,) = parse_qs(urlsplit(response["Location"]).query)["code"]
        assert json.loads(store_path.read_text())["codes"][code]["portal_id"] == int(picked)


def test_consent_page_for_one_portal_checks_the_url_too(client: Client) -> None:
    response = client.get(portal_authorize_url(87654321, client_id="someone-else"))
    assert response.status_code == 400
    assert "is not one of this fake" in response.content.decode()


# -- the whole flow, every hop over HTTP ------------------------------------------------------


def test_connect_flow_through_the_views_then_call_the_api(
    connector_client: Client, over_http: responses.RequestsMock, store_path: Path
) -> None:
    start = connector_client.post("/hubspot/connect/")
    assert start.status_code == 302
    consent_url = start["Location"]
    assert consent_url.startswith("http://testserver" + AUTHORIZE + "?")
    consent_path = consent_url.removeprefix("http://testserver")
    assert connector_client.get(consent_path).status_code == 200
    approved = connector_client.post(consent_path, {"action": "approve", "portal_id": "12345678"})
    callback = connector_client.get(approved["Location"].removeprefix("http://testserver"))
    assert callback.status_code == 302, callback.content
    connection = HubSpotConnection.objects.get(portal_id=12345678)
    assert connection.hub_domain == "demo-company.hubspot.com"
    assert connection.hublet == "na1"
    assert connection.is_active
    # The token exchange and the introspection (then any API call the connect service
    # makes, such as the account details) went through the fake's api view.
    called = [call.request.url for call in over_http.calls]
    assert called[:2] == [
        "http://testserver/fake-hubspot/api/oauth/2026-03/token",
        "http://testserver/fake-hubspot/api/oauth/2026-03/token/introspect",
    ]
    assert all(url.startswith("http://testserver/fake-hubspot/api/") for url in called)
    # The tokens live in the file: a second FakeHubSpot (another process) knows them.
    other = FakeHubSpot(store=FileStore(store_path))
    assert other.is_issued_access_token(connection.access_token)
    assert other.is_live_refresh_token(connection.refresh_token)

    details = api_session(12345678).get("/account-info/2026-03/details")
    assert details.status_code == 200
    assert details.json()["portalId"] == 12345678
    contacts = api_session(12345678).get("/crm/objects/2026-03/contacts", params={"limit": 2})
    assert [c["properties"]["firstname"] for c in contacts.json()["results"]] == ["Ada", "Grace"]

    refresh_token = connection.refresh_token
    connection.disconnect()  # the revocation goes through the api view too
    assert not other.is_live_refresh_token(refresh_token)
    assert other.refresh_calls() == 0


def test_reconnect_in_place_through_the_views(
    connector_client: Client, over_http: responses.RequestsMock
) -> None:
    page = connector_client.get("/hubspot/connect/?portal=87654321&next=/done/")
    assert page.status_code == 200
    assert '<input type="hidden" name="portal" value="87654321">' in page.content.decode()
    start = connector_client.post("/hubspot/connect/", {"portal": "87654321", "next": "/done/"})
    consent_path = start["Location"].removeprefix("http://testserver")
    assert consent_path.startswith("/fake-hubspot/oauth/87654321/authorize?")
    assert selected_portal(connector_client.get(consent_path).content.decode()) == "87654321"
    approved = connector_client.post(consent_path, {"action": "approve", "portal_id": "87654321"})
    callback = connector_client.get(approved["Location"].removeprefix("http://testserver"))
    assert callback["Location"] == "/done/"
    assert HubSpotConnection.objects.get().portal_id == 87654321


# -- the API view on its own ---------------------------------------------------------------------


def test_api_without_a_token_answers_401(client: Client) -> None:
    response = client.get(API + "/account-info/v3/details")
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["category"] == "INVALID_AUTHENTICATION"


def test_api_with_an_expired_token_answers_401(client: Client, store_path: Path) -> None:
    fake = FakeHubSpot(store=FileStore(store_path))
    token = fake.issue_tokens(12345678, expires_in=-1)["access_token"]
    response = client.get(
        API + "/account-info/v3/details", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.json()["category"] == "EXPIRED_AUTHENTICATION"


def test_token_endpoint_checks_the_client_secret(client: Client) -> None:
    response = client.post(
        API + "/oauth/2026-03/token",
        urlencode(
            {
                "grant_type": "authorization_code",
                "code": "x",
                "redirect_uri": REDIRECT_URI,
                "client_id": CLIENT_ID,
                "client_secret": "wrong",
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"


def test_secrets_in_the_query_string_are_refused(client: Client) -> None:
    response = client.post(
        API + f"/oauth/2026-03/token?client_secret={CLIENT_SECRET}",
        "grant_type=refresh_token",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_revoke_answers_204_without_a_body(client: Client, store_path: Path) -> None:
    fake = FakeHubSpot(store=FileStore(store_path))
    refresh_token = fake.issue_tokens(12345678)["refresh_token"]
    response = client.post(
        API + "/oauth/2026-03/token/revoke",
        urlencode(
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "token": refresh_token,
                "token_type_hint": "refresh_token",
            }
        ),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 204
    assert response.content == b""
    assert "Content-Type" not in response
    assert not fake.is_live_refresh_token(refresh_token)


def test_unknown_api_path_answers_404(client: Client) -> None:
    response = client.get(API + "/crm/v3/objects/deals")
    assert response.status_code == 404
    assert response.json()["category"] == "OBJECT_NOT_FOUND"


@pytest.mark.parametrize(("kind", "status"), [("timeout", 504), ("reset", 502), ("status", 503)])
def test_injected_faults_become_gateway_errors(
    client: Client, store_path: Path, kind: str, status: int
) -> None:
    FakeHubSpot(store=FileStore(store_path)).fail(kind, status=503, endpoint="api")
    response = client.get(API + "/account-info/v3/details")
    assert response.status_code == status
    assert response.json()["status"] == "error"
    # One fault, used once: the next request is answered normally.
    assert client.get(API + "/account-info/v3/details").status_code == 401


def test_without_a_store_setting_the_state_lives_in_this_process(client: Client) -> None:
    with override_settings(HUBSPOT_FAKE_STORE=None):
        fake = fake_server.get_fake()
        assert not isinstance(fake.store, FileStore)
        token = fake.issue_tokens(12345678)["access_token"]
        response = client.get(
            API + "/account-info/v3/details", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200
        fake.reset()


def test_get_fake_follows_the_settings(store_path: Path) -> None:
    fake = fake_server.get_fake()
    assert isinstance(fake.store, FileStore)
    assert fake.store.path == store_path
    assert fake.client_id == CLIENT_ID
    assert fake.api_base_url == "http://testserver" + API
