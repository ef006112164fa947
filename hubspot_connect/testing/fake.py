"""FakeHubSpot: an in-memory stand-in for HubSpot's OAuth server, for tests and demos.

It speaks HubSpot's wire format (the dated ``/oauth/{version}/token`` endpoints with
form bodies, HubSpot-shaped error bodies) with single-use, expiring authorization
codes, expiring access tokens, refresh, introspect and revoke, plus a few API
endpoints (``GET /account-info/2026-03/details``, ``GET /crm/objects/2026-03/contacts``,
contact search, ``DELETE /appinstalls/2026-03/external-install``) under HubSpot's
per-portal rate limits (:class:`~hubspot_connect.testing.api.RateLimits`), and switches
to inject failures. One implementation, :meth:`FakeHubSpot.handle`,
serves every transport: ``responses`` in tests (:meth:`FakeHubSpot.start`), Django
views in the demo (``hubspot_connect.fake_server``), and a real HTTP server for other
processes and the benchmarks (:class:`~hubspot_connect.testing.FakeHubSpotServer`).

Typical use in a test::

    with FakeHubSpot() as hubspot:            # routes requests to api.hubapi.com
        response = client.post(reverse("hubspot_connect:connect"))
        callback = hubspot.approve(response["Location"], portal_id=12345678)
        client.get(callback)
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from . import api, oauth
from .stores import FileStore, MemoryStore
from .wire import (
    JSON_HEADERS,
    FakeConnectionReset,
    FakeResponse,
    FakeTimeout,
    Fault,
    error_response,
    json_response,
    oauth_error,
)

DEFAULT_CLIENT_ID = "fake-client-id"
DEFAULT_CLIENT_SECRET = "fake-client-secret"  # noqa: S105  (a test double's credential)

#: Demo portals: portal id -> what HubSpot knows about it.
DEFAULT_PORTALS: dict[int, dict[str, Any]] = {
    12345678: {
        "hub_domain": "demo-company.hubspot.com",
        "hublet": "na1",
        "user": "owner@demo-company.example",
        "user_id": 4101,
    },
    87654321: {
        "hub_domain": "acme-europe.hubspot.com",
        "hublet": "eu1",
        "user": "ops@acme-europe.example",
        "user_id": 4202,
    },
}


class FakeHubSpot:
    """An in-memory HubSpot OAuth server. See the module docstring."""

    def __init__(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        api_base_url: str | None = None,
        authorize_url: str | None = None,
        api_version: str | None = None,
        access_token_lifetime: int = 1800,
        code_lifetime: int = 600,
        portals: dict[int, dict[str, Any]] | None = None,
        rotate_refresh_tokens: bool = False,
        include_token_metadata: bool = True,
        latency: float = 0.0,
        store: MemoryStore | FileStore | None = None,
        clock: Callable[[], float] = time.time,
        rate_limit: tuple[int, float] | None = (110, 10),
        search_rate_limit: tuple[int, float] | None = (5, 1),
        daily_limit: int | None = None,
    ) -> None:
        settings = _app_settings()
        self.client_id = client_id or (settings.CLIENT_ID if settings else "") or DEFAULT_CLIENT_ID
        self.client_secret = (
            client_secret or (settings.CLIENT_SECRET if settings else "") or DEFAULT_CLIENT_SECRET
        )
        self.api_base_url = (
            api_base_url or (settings.API_BASE_URL if settings else "https://api.hubapi.com")
        ).rstrip("/")
        self.authorize_url = authorize_url or (
            settings.AUTHORIZE_URL if settings else "https://app.hubspot.com/oauth/authorize"
        )
        self.api_version = api_version or (settings.OAUTH_API_VERSION if settings else "2026-03")
        self.access_token_lifetime = access_token_lifetime
        self.code_lifetime = code_lifetime
        self.portals = dict(DEFAULT_PORTALS if portals is None else portals)
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.include_token_metadata = include_token_metadata
        self.latency = latency
        self.store = store or MemoryStore()
        self.clock = clock
        #: HubSpot's per-portal API limits, and when each API request arrived.
        self.limits = api.RateLimits(rate_limit, search_rate_limit, daily_limit)
        #: Called with the endpoint name before each request; may return a Fault (seeded chaos).
        self.fault_plan: Callable[[str], Fault | None] | None = None
        #: Every request seen in this process: (method, path, form fields). Test-only data.
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._mock: Any = None

    # -- the consent screen ---------------------------------------------------------------

    def consent(
        self, authorize_url: str, *, approve: bool = True, portal_id: int | None = None
    ) -> str:
        """What HubSpot's consent screen does: the URL it sends the browser back to.

        An authorize URL for one account (``…/oauth/{portal_id}/authorize``) preselects
        that portal; ``portal_id`` picks another, as a user can on HubSpot's screen.
        """
        query = dict(parse_qsl(urlsplit(authorize_url).query, keep_blank_values=True))
        preselected = re.search(r"/([0-9]+)/authorize/?$", urlsplit(authorize_url).path)
        if query.get("client_id") != self.client_id:
            raise ValueError("The authorize URL carries an unknown client_id.")
        redirect_uri = query.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            raise ValueError("The authorize URL carries no absolute redirect_uri.")
        scopes = query.get("scope", "").split()
        if "oauth" not in scopes:
            raise ValueError("The authorize URL does not ask for the 'oauth' scope.")
        params: dict[str, str]
        if approve:
            if not portal_id:
                portal_id = int(preselected.group(1)) if preselected else next(iter(self.portals))
            if portal_id not in self.portals:
                raise ValueError(f"Portal {portal_id} is not one of this fake's portals.")
            optional = query.get("optional_scope", "").split()
            code = f"{self.portals[portal_id].get('hublet', 'na1')}-{uuid.uuid4()}"
            with self.store.transaction() as data:
                data.setdefault("codes", {})[code] = {
                    "portal_id": portal_id,
                    "scopes": scopes + optional,
                    "redirect_uri": redirect_uri,
                    "expires_at": self.clock() + self.code_lifetime,
                }
            params = {"code": code}
        else:
            params = {
                "error": "access_denied",
                "error_description": "The user declined to grant access.",
            }
        if "state" in query:
            params["state"] = query["state"]
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return redirect_uri + separator + urlencode(params)

    def approve(self, authorize_url: str, *, portal_id: int | None = None) -> str:
        return self.consent(authorize_url, approve=True, portal_id=portal_id)

    def decline(self, authorize_url: str) -> str:
        return self.consent(authorize_url, approve=False)

    # -- failure switches -----------------------------------------------------------------------

    def fail(self, kind: str = "status", **options: Any) -> Fault:
        """Make the next request(s) to an endpoint fail; see :class:`Fault`."""
        fault = Fault(kind, **options)
        with self.store.transaction() as data:
            data.setdefault("faults", []).append(fault.__dict__.copy())
        return fault

    def revoke_all(self, portal_id: int | None = None) -> None:
        """Revoke refresh tokens, as when a portal uninstalls the app."""
        with self.store.transaction() as data:
            for grant in data.get("refresh_tokens", {}).values():
                if portal_id is None or grant["portal_id"] == portal_id:
                    grant["revoked"] = True

    def expire_access_tokens(self) -> None:
        with self.store.transaction() as data:
            for grant in data.get("access_tokens", {}).values():
                grant["expires_at"] = self.clock() - 1

    # -- seeding and inspection -----------------------------------------------------------------

    def issue_tokens(
        self, portal_id: int, scopes: list[str] | None = None, *, expires_in: int | None = None
    ) -> dict[str, Any]:
        """Tokens as if ``portal_id`` had connected; for seeding tests and benchmarks."""
        with self.store.transaction() as data:
            return oauth.issue(self, data, portal_id, scopes or ["oauth"], None, expires_in)

    def refresh_calls(self, refresh_token: str | None = None) -> int:
        """How often the token endpoint was asked to refresh (one token, or all)."""
        with self.store.transaction() as data:
            calls = data.get("refresh_calls", {})
            if refresh_token is None:
                return sum(calls.values())
            return int(calls.get(refresh_token, 0))

    def refresh_calls_by_token(self) -> dict[str, int]:
        with self.store.transaction() as data:
            return dict(data.get("refresh_calls", {}))

    def is_issued_access_token(self, token: str) -> bool:
        with self.store.transaction() as data:
            return token in data.get("access_tokens", {})

    def is_live_refresh_token(self, token: str) -> bool:
        with self.store.transaction() as data:
            grant = data.get("refresh_tokens", {}).get(token)
            return bool(grant and not grant.get("revoked"))

    def access_token_portal(self, token: str) -> int | None:
        with self.store.transaction() as data:
            grant = data.get("access_tokens", {}).get(token)
            return int(grant["portal_id"]) if grant else None

    def refresh_token_portal(self, token: str) -> int | None:
        with self.store.transaction() as data:
            grant = data.get("refresh_tokens", {}).get(token)
            return int(grant["portal_id"]) if grant else None

    def reset(self) -> None:
        with self.store.transaction() as data:
            data.clear()
        self.requests.clear()
        self.limits.reset()

    # -- the one request handler ------------------------------------------------------------------

    def handle(
        self, method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> FakeResponse:
        """Answer one HTTP request. ``url`` may be absolute or a path below the API base."""
        parts = urlsplit(url)
        path = parts.path
        base_path = urlsplit(self.api_base_url).path.rstrip("/")
        if base_path and path.startswith(base_path):
            path = path[len(base_path) :]
        headers = {key.lower(): value for key, value in (headers or {}).items()}
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        self.requests.append((method.upper(), path, form))
        endpoint = self._endpoint(method.upper(), path)
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(endpoint)
        if fault is not None:
            return self._apply_fault(fault)
        if endpoint == "token":
            return self._guarded(parts.query, headers, lambda data: oauth.token(self, data, form))
        if endpoint == "introspect":
            return self._guarded(
                parts.query, headers, lambda data: oauth.introspect(self, data, form)
            )
        if endpoint == "revoke":
            return self._guarded(parts.query, headers, lambda data: oauth.revoke(self, data, form))
        if endpoint == "api":
            with self.store.transaction() as data:
                query = dict(parse_qsl(parts.query))
                return api.answer(self, data, method.upper(), path, query, headers, body)
        return error_response(404, "OBJECT_NOT_FOUND", f"No endpoint {method.upper()} {path}.")

    def _endpoint(self, method: str, path: str) -> str:
        prefix = f"/oauth/{self.api_version}/token"
        if method == "POST" and path == prefix:
            return "token"
        if method == "POST" and path == prefix + "/introspect":
            return "introspect"
        if method == "POST" and path == prefix + "/revoke":
            return "revoke"
        if api.handles(method, path):
            return "api"
        return "unknown"

    def _take_fault(self, endpoint: str) -> Fault | None:
        if self.fault_plan is not None:
            planned = self.fault_plan(endpoint)
            if planned is not None:
                return planned
        with self.store.transaction() as data:
            for index, stored in enumerate(data.get("faults", [])):
                if stored["endpoint"] == endpoint:
                    fault = Fault(**stored)
                    stored["times"] -= 1
                    if stored["times"] <= 0:
                        del data["faults"][index]
                    return fault
        return None

    def _apply_fault(self, fault: Fault) -> FakeResponse:
        if fault.delay:
            time.sleep(fault.delay)
        if fault.kind == "timeout":
            raise FakeTimeout("FakeHubSpot: injected timeout")
        if fault.kind == "reset":
            raise FakeConnectionReset("FakeHubSpot: injected connection reset")
        if fault.kind == "truncated":
            return FakeResponse(200, b'{"access_token": "Cabc", "refresh_tok', JSON_HEADERS)
        if fault.kind == "non_json":
            return FakeResponse(
                fault.status if fault.status >= 400 and fault.status != 500 else 502,
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                {"Content-Type": "text/html"},
            )
        if fault.kind == "missing_fields":
            return json_response(
                200, {"token_type": "bearer", "expires_in": self.access_token_lifetime}
            )
        if fault.kind == "invalid_grant":
            return oauth_error("invalid_grant", "BAD_REFRESH_TOKEN", "missing or unknown token")

        if fault.status == 429:
            return api.rate_limit_response("TEN_SECONDLY_ROLLING", fault.retry_after)
        extra = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        category = "INTERNAL_ERROR"
        response = error_response(fault.status, category, f"Injected HTTP {fault.status}.")
        response.headers.update(extra)
        return response

    def _guarded(
        self,
        query: str,
        headers: dict[str, str],
        answer: Callable[[dict[str, Any]], FakeResponse],
    ) -> FakeResponse:
        if any(
            name in ("client_secret", "code", "refresh_token", "token")
            for name, _ in parse_qsl(query)
        ):
            return oauth_error("invalid_request", "BAD_REQUEST", "Secrets belong in the body.")
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return oauth_error(
                "invalid_request", "BAD_REQUEST", "Send application/x-www-form-urlencoded."
            )
        with self.store.transaction() as data:
            return answer(data)

    # -- transport: responses (tests) ---------------------------------------------------------

    def start(self) -> FakeHubSpot:
        """Route ``requests`` calls to the API base URL here (needs ``responses``)."""
        import requests
        import responses

        def callback(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
            body = request.body or b""
            if isinstance(body, str):
                body = body.encode()
            try:
                answer = self.handle(
                    request.method or "GET", request.url or "", dict(request.headers), body
                )
            except FakeTimeout:
                raise requests.exceptions.ReadTimeout("FakeHubSpot: read timed out") from None
            except FakeConnectionReset:
                raise requests.exceptions.ConnectionError(
                    ConnectionResetError(104, "Connection reset by peer")
                ) from None
            return answer.status, answer.headers, answer.body

        self._mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        pattern = re.compile(re.escape(self.api_base_url) + r"(/.*)?$")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            self._mock.add_callback(method, pattern, callback=callback)
        self._mock.start()
        return self

    def stop(self) -> None:
        if self._mock is not None:
            self._mock.stop()
            self._mock.reset()
            self._mock = None

    def __enter__(self) -> FakeHubSpot:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _app_settings() -> Any:
    """The app's settings if Django is configured, else ``None`` (plain scripts)."""
    try:
        from django.conf import settings

        if not settings.configured:
            return None
        from ..conf import app_settings

        return app_settings
    except ImportError:  # pragma: no cover - Django is a dependency
        return None
