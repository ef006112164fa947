"""FakeHubSpot: the behaviours the rest of the suite relies on."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from hubspot_connect.client import HubSpotOAuthClient
from hubspot_connect.exceptions import (
    HubSpotOAuthError,
    HubSpotUnavailable,
    InvalidClient,
    InvalidGrant,
)
from hubspot_connect.testing import FakeHubSpot, Fault

REDIRECT = "https://testserver/hubspot/callback/"
API = "https://api.hubapi.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock):
    with FakeHubSpot(clock=clock) as hubspot:
        yield hubspot


@pytest.fixture
def oauth() -> HubSpotOAuthClient:
    return HubSpotOAuthClient()


def code_for(fake: FakeHubSpot, oauth: HubSpotOAuthClient, portal_id: int = 12345678) -> str:
    authorize = oauth.authorization_url(redirect_uri=REDIRECT, state="s")
    return dict(parse_qsl(urlsplit(fake.approve(authorize, portal_id=portal_id)).query))["code"]


def test_fake_uses_the_sites_credentials(fake):
    assert fake.client_id == "test-client-id"
    assert fake.client_secret == "test-client-secret-8d1f0c"


def test_consent_keeps_state_and_redirect(fake, oauth):
    authorize = oauth.authorization_url(redirect_uri=REDIRECT + "?x=1", state="abc")
    approved = fake.approve(authorize)
    assert approved.startswith(REDIRECT + "?x=1&code=na1-")
    assert dict(parse_qsl(urlsplit(approved).query))["state"] == "abc"
    declined = dict(parse_qsl(urlsplit(fake.decline(authorize)).query))
    assert declined["error"] == "access_denied"
    assert declined["state"] == "abc"
    assert "code" not in declined


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client_id": "someone-else"}, "client_id"),
        ({"redirect_uri": "/relative/"}, "redirect_uri"),
        ({"scope": "crm.objects.contacts.read"}, "oauth"),
    ],
)
def test_consent_refuses_bad_authorize_urls(fake, change, message):
    params = {"client_id": fake.client_id, "redirect_uri": REDIRECT, "scope": "oauth", **change}
    url = "https://app.hubspot.com/oauth/authorize?" + "&".join(
        f"{k}={v}" for k, v in params.items()
    )
    with pytest.raises(ValueError, match=message):
        fake.consent(url)


def test_consent_refuses_unknown_portals(fake, oauth):
    with pytest.raises(ValueError, match="Portal 1"):
        fake.approve(oauth.authorization_url(redirect_uri=REDIRECT, state="s"), portal_id=1)


def portal_of(fake: FakeHubSpot, callback: str) -> int:
    code = dict(parse_qsl(urlsplit(callback).query))["code"]
    with fake.store.transaction() as data:
        return int(data["codes"][code]["portal_id"])


def test_a_per_portal_authorize_url_preselects_that_portal(fake, oauth):
    authorize = oauth.authorization_url(redirect_uri=REDIRECT, state="s", portal_id=87654321)
    assert urlsplit(authorize).path == "/oauth/87654321/authorize"
    approved = fake.approve(authorize)
    assert approved.startswith(REDIRECT + "?code=eu1-")
    assert portal_of(fake, approved) == 87654321
    # The user can still pick another account on the consent screen.
    assert portal_of(fake, fake.approve(authorize, portal_id=12345678)) == 12345678
    declined = dict(parse_qsl(urlsplit(fake.decline(authorize)).query))
    assert (declined["error"], declined["state"]) == ("access_denied", "s")


def test_a_per_portal_authorize_url_for_an_unknown_portal_is_refused(fake, oauth):
    authorize = oauth.authorization_url(redirect_uri=REDIRECT, state="s", portal_id=5)
    with pytest.raises(ValueError, match="Portal 5"):
        fake.approve(authorize)
    assert portal_of(fake, fake.approve(authorize, portal_id=12345678)) == 12345678


def test_codes_are_single_use(fake, oauth):
    code = code_for(fake, oauth)
    tokens = oauth.exchange_code(code, redirect_uri=REDIRECT)
    assert tokens.hub_id == 12345678
    with pytest.raises(InvalidGrant) as caught:
        oauth.exchange_code(code, redirect_uri=REDIRECT)
    assert caught.value.status == "BAD_AUTH_CODE"


def test_codes_expire(fake, oauth, clock):
    code = code_for(fake, oauth)
    clock.now += fake.code_lifetime + 1
    with pytest.raises(InvalidGrant) as caught:
        oauth.exchange_code(code, redirect_uri=REDIRECT)
    assert caught.value.status == "EXPIRED_AUTH_CODE"


def test_redirect_uri_must_match(fake, oauth):
    code = code_for(fake, oauth)
    with pytest.raises(InvalidGrant) as caught:
        oauth.exchange_code(code, redirect_uri="https://other.example/cb/")
    assert caught.value.status == "MISMATCH_REDIRECT_URI_AUTH_CODE"


def test_wrong_client_credentials_are_refused(fake):
    bad = HubSpotOAuthClient(client_secret="wrong")
    with pytest.raises(InvalidClient) as caught:
        bad.refresh("anything")
    assert caught.value.status == "BAD_CLIENT_SECRET"
    with pytest.raises(InvalidClient):
        HubSpotOAuthClient(client_id="nobody").introspect("x")


def test_secrets_in_the_query_string_and_json_bodies_are_refused(fake):
    answer = requests.post(
        f"{API}/oauth/2026-03/token?client_secret=x", data={"a": "b"}, timeout=1
    )
    assert answer.status_code == 400
    answer = requests.post(f"{API}/oauth/2026-03/token", json={"grant_type": "x"}, timeout=1)
    assert answer.status_code == 400
    assert "x-www-form-urlencoded" in answer.json()["message"]


def test_refresh_counts_and_keeps_or_rotates_the_refresh_token(fake, oauth):
    issued = fake.issue_tokens(12345678)
    first = oauth.refresh(issued["refresh_token"])
    assert first.refresh_token == issued["refresh_token"]
    assert first.access_token != issued["access_token"]
    oauth.refresh(issued["refresh_token"])
    assert fake.refresh_calls(issued["refresh_token"]) == 2
    assert fake.refresh_calls() == 2
    assert fake.refresh_calls_by_token() == {issued["refresh_token"]: 2}
    fake.rotate_refresh_tokens = True
    rotated = oauth.refresh(issued["refresh_token"])
    assert rotated.refresh_token != issued["refresh_token"]
    assert not fake.is_live_refresh_token(issued["refresh_token"])
    with pytest.raises(InvalidGrant):
        oauth.refresh(issued["refresh_token"])


def test_revoke_ends_refresh_and_access(fake, oauth):
    issued = fake.issue_tokens(12345678)
    oauth.revoke(issued["refresh_token"])
    assert not fake.is_live_refresh_token(issued["refresh_token"])
    assert oauth.introspect(issued["access_token"]).active is False
    with pytest.raises(InvalidGrant) as caught:
        oauth.refresh(issued["refresh_token"])
    assert caught.value.status == "BAD_REFRESH_TOKEN"
    oauth.revoke("never-issued")  # HubSpot answers an unknown token without error


def test_revoke_all_is_an_uninstall(fake, oauth):
    one = fake.issue_tokens(12345678)
    other = fake.issue_tokens(87654321)
    fake.revoke_all(12345678)
    assert not fake.is_live_refresh_token(one["refresh_token"])
    assert fake.is_live_refresh_token(other["refresh_token"])


def test_introspect_access_and_refresh_tokens(fake, oauth, clock):
    issued = fake.issue_tokens(87654321, ["oauth", "tickets"])
    access = oauth.introspect(issued["access_token"])
    assert (access.active, access.hub_id, access.hublet, access.token_use) == (
        True,
        87654321,
        "eu1",
        "access_token",
    )
    assert access.expires_in == 1800
    assert access.scopes == ("oauth", "tickets")
    assert access.hub_domain == "acme-europe.hubspot.com"
    refresh = oauth.introspect(issued["refresh_token"], token_type_hint="refresh_token")
    assert (refresh.active, refresh.token_use, refresh.expires_in) == (True, "refresh_token", None)
    clock.now += 1801
    assert oauth.introspect(issued["access_token"]).active is False
    assert oauth.introspect("unknown").active is False


def test_token_metadata_can_be_left_out(clock):
    with FakeHubSpot(include_token_metadata=False, clock=clock) as fake:
        issued = fake.issue_tokens(12345678)
    assert not {"hub_id", "scopes", "user_id"} & set(issued)


def test_api_endpoints_check_the_bearer_token(fake, clock):
    issued = fake.issue_tokens(12345678, ["oauth", "crm.objects.contacts.read"])
    headers = {"Authorization": f"Bearer {issued['access_token']}"}
    details = requests.get(f"{API}/account-info/v3/details", headers=headers, timeout=1)
    assert details.status_code == 200
    assert details.json()["portalId"] == 12345678
    contacts = requests.get(f"{API}/crm/v3/objects/contacts?limit=2", headers=headers, timeout=1)
    assert len(contacts.json()["results"]) == 2
    assert requests.get(f"{API}/account-info/v3/details", timeout=1).status_code == 401
    clock.now += 1800
    expired = requests.get(f"{API}/account-info/v3/details", headers=headers, timeout=1)
    assert expired.status_code == 401
    assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"


def test_expire_access_tokens(fake, oauth):
    issued = fake.issue_tokens(12345678)
    fake.expire_access_tokens()
    assert oauth.introspect(issued["access_token"]).active is False


def test_api_needs_the_contacts_scope(fake):
    issued = fake.issue_tokens(12345678, ["oauth"])
    headers = {"Authorization": f"Bearer {issued['access_token']}"}
    answer = requests.get(f"{API}/crm/v3/objects/contacts", headers=headers, timeout=1)
    assert answer.status_code == 403


def test_unknown_paths_answer_404_and_are_recorded(fake):
    answer = requests.post(f"{API}/oauth/v1/token", data={"a": "b"}, timeout=1)
    assert answer.status_code == 404
    assert fake.requests == [("POST", "/oauth/v1/token", {"a": "b"})]


@pytest.mark.parametrize(
    ("fault", "error", "check"),
    [
        ({"kind": "status", "status": 503}, HubSpotUnavailable, lambda e: e.http_status == 503),
        (
            {"kind": "status", "status": 429, "retry_after": 7},
            HubSpotUnavailable,
            lambda e: e.retry_after == 7,
        ),
        ({"kind": "status", "status": 403}, HubSpotOAuthError, lambda e: e.http_status == 403),
        ({"kind": "timeout"}, HubSpotUnavailable, lambda e: "within" in str(e)),
        ({"kind": "reset"}, HubSpotUnavailable, lambda e: "ConnectionError" in str(e)),
        ({"kind": "truncated"}, HubSpotUnavailable, lambda e: e.http_status == 200),
        ({"kind": "non_json"}, HubSpotUnavailable, lambda e: e.http_status == 502),
        ({"kind": "missing_fields"}, HubSpotUnavailable, lambda e: "lacks" in str(e)),
        ({"kind": "invalid_grant"}, InvalidGrant, lambda e: e.status == "BAD_REFRESH_TOKEN"),
    ],
)
def test_fault_kinds(fake, oauth, fault, error, check):
    issued = fake.issue_tokens(12345678)
    fake.fail(**fault)
    with pytest.raises(error) as caught:
        oauth.refresh(issued["refresh_token"])
    assert check(caught.value)
    # One failure only: the next call succeeds.
    assert oauth.refresh(issued["refresh_token"]).access_token


def test_faults_target_one_endpoint_and_can_repeat(fake, oauth):
    issued = fake.issue_tokens(12345678)
    fake.fail("status", status=500, endpoint="introspect", times=2)
    assert oauth.refresh(issued["refresh_token"]).access_token
    for _ in range(2):
        with pytest.raises(HubSpotUnavailable):
            oauth.introspect(issued["access_token"])
    assert oauth.introspect(issued["access_token"]).active


def test_fault_plan_and_unknown_kinds(fake, oauth):
    issued = fake.issue_tokens(12345678)
    fake.fault_plan = lambda endpoint: Fault("timeout") if endpoint == "token" else None
    with pytest.raises(HubSpotUnavailable):
        oauth.refresh(issued["refresh_token"])
    assert oauth.introspect(issued["access_token"]).active
    with pytest.raises(ValueError, match="Unknown fault kind"):
        fake.fail("explode")


def test_latency_and_fault_delay_slow_the_answer(oauth):
    with FakeHubSpot(latency=0.05) as fake:
        issued = fake.issue_tokens(12345678)
        fake.fail("status", status=500, delay=0.05)
        started = time.monotonic()
        with pytest.raises(HubSpotUnavailable):
            oauth.refresh(issued["refresh_token"])
        assert time.monotonic() - started >= 0.1


def test_reset_forgets_everything(fake, oauth):
    issued = fake.issue_tokens(12345678)
    oauth.refresh(issued["refresh_token"])
    fake.reset()
    assert fake.requests == []
    assert fake.refresh_calls() == 0
    assert not fake.is_issued_access_token(issued["access_token"])
    assert fake.access_token_portal(issued["access_token"]) is None


def test_lookups(fake):
    issued = fake.issue_tokens(87654321)
    assert fake.access_token_portal(issued["access_token"]) == 87654321
    assert fake.refresh_token_portal(issued["refresh_token"]) == 87654321
    assert fake.refresh_token_portal("nope") is None
    assert 100 <= len(issued["access_token"]) <= 300


def test_fixture_routes_requests(fake_hubspot):
    assert isinstance(fake_hubspot, FakeHubSpot)
    issued = fake_hubspot.issue_tokens(12345678)
    assert HubSpotOAuthClient().introspect(issued["access_token"]).hub_id == 12345678


def test_fake_hubspot_server_serves_the_fake_over_real_http() -> None:
    import requests

    from hubspot_connect.client import HubSpotOAuthClient
    from hubspot_connect.exceptions import HubSpotUnavailable, InvalidGrant
    from hubspot_connect.testing import FakeHubSpotServer

    with FakeHubSpotServer(timeout_hold=5) as server:
        issued = server.fake.issue_tokens(12345678)
        client = HubSpotOAuthClient(
            client_id=server.fake.client_id,
            client_secret=server.fake.client_secret,
            api_base_url=server.url,
            timeout=0.5,
        )
        first = client.refresh(issued["refresh_token"])
        second = client.refresh(issued["refresh_token"])
        assert server.fake.is_issued_access_token(first.access_token)
        assert server.fake.refresh_calls(issued["refresh_token"]) == 2
        assert server.answers == [200, 200]
        assert server.answered.is_set()
        server.fake.fail("invalid_grant")
        with pytest.raises(InvalidGrant):
            client.refresh(issued["refresh_token"])
        server.fake.fail("reset")
        with pytest.raises(HubSpotUnavailable):
            client.refresh(issued["refresh_token"])
        server.fake.fail("timeout")
        with pytest.raises(HubSpotUnavailable, match="within"):
            client.refresh(issued["refresh_token"])
        answer = requests.get(
            server.url + "/account-info/v3/details",
            timeout=2,
            headers={"Authorization": f"Bearer {second.access_token}"},
        )
        assert answer.json()["portalId"] == 12345678


# -- HubSpot's limits, search and uninstall ------------------------------------------------------


def bearer(fake: FakeHubSpot, portal_id: int = 12345678) -> dict[str, str]:
    issued = fake.issue_tokens(portal_id, ["oauth", "crm.objects.contacts.read"])
    return {"Authorization": f"Bearer {issued['access_token']}"}


def test_the_fake_limits_each_portal_to_110_requests_per_rolling_10_seconds(fake, clock):
    one, other = bearer(fake), bearer(fake, 87654321)
    url = f"{API}/crm/objects/2026-03/contacts"
    first = clock.now
    for _ in range(110):
        assert requests.get(url, headers=one, timeout=1).status_code == 200
        clock.now += 0.05  # 110 requests in 5.5 s
    refused = requests.get(url, headers=one, timeout=1)
    assert refused.status_code == 429
    body = refused.json()
    assert (body["status"], body["errorType"], body["policyName"]) == (
        "error",
        "RATE_LIMIT",
        "TEN_SECONDLY_ROLLING",
    )
    assert body["message"]
    assert refused.headers["Retry-After"] == "5"  # when the oldest request leaves the window
    assert requests.get(url, headers=other, timeout=1).status_code == 200  # per portal
    clock.now = first + 10  # the first request left the window: one place is free
    assert requests.get(url, headers=one, timeout=1).status_code == 200
    assert requests.get(url, headers=one, timeout=1).status_code == 429
    assert fake.limits.refused(12345678) == 2
    assert fake.limits.max_in_window(12345678, 10) == 112  # what arrived, refused included
    assert fake.limits.count(87654321) == 1


def test_the_fake_limits_search_to_5_per_second(fake, clock):
    headers = bearer(fake)
    url = f"{API}/crm/v3/objects/contacts/search"
    statuses = [
        requests.post(url, json={"limit": 1}, headers=headers, timeout=1).status_code
        for _ in range(6)
    ]
    assert statuses == [200] * 5 + [429]
    refused = requests.post(url, json={}, headers=headers, timeout=1)
    assert refused.json()["policyName"] == "SECONDLY"
    assert refused.headers["Retry-After"] == "1"
    assert requests.get(f"{API}/crm/v3/objects/contacts", headers=headers, timeout=1).ok
    clock.now += 1
    answer = requests.post(url, json={"limit": 2}, headers=headers, timeout=1)
    assert (answer.json()["total"], len(answer.json()["results"])) == (2, 2)
    assert requests.post(url, data="{", headers=headers, timeout=1).status_code == 400
    assert fake.limits.count(12345678, search=True) == 9


def test_the_fake_has_an_optional_daily_limit(clock):
    with FakeHubSpot(clock=clock, daily_limit=2, rate_limit=None, search_rate_limit=None) as fake:
        headers = bearer(fake)
        url = f"{API}/account-info/2026-03/details"
        statuses = [requests.get(url, headers=headers, timeout=1).status_code for _ in range(3)]
        refused = requests.get(url, headers=headers, timeout=1)
    assert statuses == [200, 200, 429]
    assert refused.json()["policyName"] == "DAILY"
    assert "Retry-After" not in refused.headers


def test_an_injected_429_has_hubspots_body(fake):
    headers = bearer(fake)
    fake.fail("status", status=429, endpoint="api", retry_after=3)
    answer = requests.get(f"{API}/account-info/2026-03/details", headers=headers, timeout=1)
    assert answer.status_code == 429
    assert answer.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert answer.headers["Retry-After"] == "3"


def test_the_fake_uninstalls_the_app_from_one_portal(fake, oauth):
    issued = fake.issue_tokens(12345678, ["oauth"])
    other = bearer(fake, 87654321)
    headers = {"Authorization": f"Bearer {issued['access_token']}"}
    url = f"{API}/appinstalls/2026-03/external-install"
    assert requests.delete(url, headers=headers, timeout=1).status_code == 204
    details = f"{API}/account-info/2026-03/details"
    assert requests.get(details, headers=headers, timeout=1).status_code == 401
    with pytest.raises(InvalidGrant):
        oauth.refresh(issued["refresh_token"])
    assert requests.delete(url, headers=headers, timeout=1).status_code == 401
    assert requests.get(details, headers=other, timeout=1).status_code == 200
    assert fake.limits.count(12345678) == 1  # a request HubSpot rejected is not counted


def test_the_fake_server_answers_every_method() -> None:
    from hubspot_connect.testing import FakeHubSpotServer

    with FakeHubSpotServer() as server:
        headers = bearer(server.fake)
        url = f"{server.url}/appinstalls/2026-03/external-install"
        assert requests.put(url, headers=headers, timeout=2).status_code == 404
        assert requests.patch(url, headers=headers, timeout=2).status_code == 404
        assert requests.delete(url, headers=headers, timeout=2).status_code == 204
    assert server.answers == [404, 404, 204]
