"""The client against HubSpot's published OpenAPI spec of the 2026-03 OAuth API."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from django.test import override_settings

from hubspot_connect.client import HubSpotOAuthClient, TokenInfo, TokenResponse
from hubspot_connect.conf import DEFAULT_API_BASE_URL, DEFAULT_OAUTH_API_VERSION
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.testing import FakeHubSpot

# HubSpot's published OpenAPI spec of the 2026-03 OAuth API, kept in the repository so that
# this test always runs (it never skips).
SPEC_PATH = Path(__file__).parent / "fixtures" / "hubspot-oauth-2026-03.openapi.json"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def schema(spec: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in ref_or_schema:
        name = ref_or_schema["$ref"].rsplit("/", 1)[-1]
        return spec["components"]["schemas"][name]
    return ref_or_schema


def properties(spec: dict[str, Any], name: str) -> set[str]:
    return set(spec["components"]["schemas"][name]["properties"])


OPERATIONS: dict[str, Callable[[HubSpotOAuthClient], Any]] = {
    "exchange_code": lambda c: c.exchange_code("code-1", redirect_uri="https://x.example/cb/"),
    "refresh": lambda c: c.refresh("refresh-1"),
    "introspect": lambda c: c.introspect("access-1"),
    "introspect_refresh": lambda c: c.introspect("refresh-1", token_type_hint="refresh_token"),
    "revoke": lambda c: c.revoke("refresh-1"),
}
TOKEN_BODY = {"access_token": "a", "refresh_token": "r", "expires_in": 1800}


@pytest.mark.parametrize("operation", OPERATIONS)
@override_settings(HUBSPOT_OAUTH_API_VERSION="2026-03")
def test_every_request_matches_the_spec(spec, operation):
    server = spec["servers"][0]["url"]
    seen: list[Any] = []

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        seen.append(request)
        return 200, {"Content-Type": "application/json"}, json.dumps(TOKEN_BODY)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, re.compile(".*"), callback=answer)
        OPERATIONS[operation](HubSpotOAuthClient())
    (request,) = seen
    url = urlsplit(request.url)
    assert f"{url.scheme}://{url.netloc}" == server
    assert url.query == ""
    assert url.path in spec["paths"], f"{url.path} is not in the spec"
    operation_spec = spec["paths"][url.path]
    assert set(operation_spec) == {"post"}
    assert request.method == "POST"
    content = operation_spec["post"]["requestBody"]["content"]
    (content_type,) = content
    assert request.headers["Content-Type"] == content_type
    body_schema = schema(spec, content[content_type]["schema"])
    form = dict(parse_qsl(request.body, keep_blank_values=True, strict_parsing=True))
    undeclared = set(form) - set(body_schema["properties"])
    assert not undeclared, f"fields the spec does not declare: {undeclared}"
    for name, value in form.items():
        allowed = body_schema["properties"][name].get("enum")
        if allowed is not None:
            assert value in allowed, f"{name}={value!r} is not one of {allowed}"


def test_defaults_are_the_specs_server_and_version(spec):
    assert spec["servers"][0]["url"] == DEFAULT_API_BASE_URL
    assert any(f"/oauth/{DEFAULT_OAUTH_API_VERSION}/" in path for path in spec["paths"])


def test_parsed_token_fields_exist_in_the_token_response_schema(spec):
    declared = properties(spec, "AccessTokenResponse")
    parsed = {f.name for f in dataclasses.fields(TokenResponse)}
    assert parsed <= declared, parsed - declared
    # What the client insists on is what the spec requires, nothing more.
    required = set(spec["components"]["schemas"]["AccessTokenResponse"]["required"])
    assert {"access_token", "refresh_token", "expires_in"} <= required
    # Metadata the client treats as optional is optional in the spec.
    assert not {"hub_id", "scopes", "user_id"} & required


def test_token_endpoint_answers_with_the_token_schema(spec):
    ok = spec["paths"]["/oauth/2026-03/token"]["post"]["responses"]["200"]
    one_of = schema(spec, ok["content"]["application/json"]["schema"])["oneOf"]
    assert {"$ref": "#/components/schemas/AccessTokenResponse"} in one_of


def test_parsed_introspection_fields_exist_in_the_info_schemas(spec):
    access = properties(spec, "PublicAccessTokenInfoResponse")
    refresh = properties(spec, "PublicRefreshTokenInfoResponse")
    parsed = {f.name for f in dataclasses.fields(TokenInfo)} - {"hublet"}
    assert parsed <= access, parsed - access
    assert "signed_access_token" in access
    assert "hublet" in properties(spec, "SignedAccessToken")
    # Refresh-token introspection has no expiry or signed token: parsed as optional.
    assert parsed - refresh <= {"expires_in"}


def test_error_fields_we_read_exist_in_the_error_schema(spec):
    assert {"category", "correlationId", "message"} <= properties(spec, "Error")
    for path in spec["paths"].values():
        assert path["post"]["responses"]["default"]["$ref"] == "#/components/responses/Error"


@pytest.mark.django_db
def test_a_whole_lifecycle_only_calls_dated_endpoints(
    spec, connect_portal_via_views, fake_hubspot: FakeHubSpot
):
    response = connect_portal_via_views()
    assert response.status_code == 302
    connection = HubSpotConnection.objects.get()
    assert connection.refresh(force=True) is True
    connection.disconnect(revoke=True)
    oauth_paths = [path for _, path, _ in fake_hubspot.requests if path.startswith("/oauth/")]
    assert oauth_paths == [
        "/oauth/2026-03/token",
        "/oauth/2026-03/token/introspect",
        "/oauth/2026-03/token",
        "/oauth/2026-03/token/revoke",
    ]
    # Connecting also reads the account's details, on HubSpot's dated path.
    assert ("GET", "/account-info/2026-03/details", {}) in fake_hubspot.requests
    for method, path, _form in fake_hubspot.requests:
        if path.startswith("/oauth/"):
            assert path in spec["paths"]
            assert method == "POST"
        assert "/v1/" not in path
        assert "/v3/" not in path
    assert not any("/oauth/v1/" in path for path in spec["paths"])
