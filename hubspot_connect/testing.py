"""FakeHubSpot: an in-memory stand-in for HubSpot's OAuth server, for tests and demos.

It speaks HubSpot's wire format (the dated ``/oauth/{version}/token`` endpoints with
form bodies, HubSpot-shaped error bodies) with single-use, expiring authorization
codes, expiring access tokens, refresh, introspect and revoke, plus two small API
endpoints (``GET /account-info/v3/details`` and ``GET /crm/v3/objects/contacts``)
and switches to inject failures. One implementation, :meth:`FakeHubSpot.handle`,
serves every transport: ``responses`` in tests (:meth:`FakeHubSpot.start`), Django
views in the demo (``hubspot_connect.fake_server``), and a real HTTP server for other
processes and the benchmarks (:class:`FakeHubSpotServer`).

Typical use in a test::

    with FakeHubSpot() as hubspot:            # routes requests to api.hubapi.com
        response = client.get(reverse("hubspot_connect:connect"))
        callback = hubspot.approve(response["Location"], portal_id=12345678)
        client.get(callback)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

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

FAULT_KINDS = (
    "status",  # an HTTP error status with a HubSpot-shaped body (5xx, 429, 4xx)
    "timeout",  # no answer in time
    "reset",  # the connection is reset
    "truncated",  # 200 with a JSON body cut in half
    "non_json",  # an HTML error page from a proxy
    "missing_fields",  # 200 without access_token / refresh_token
    "invalid_grant",  # 400 invalid_grant, as for a revoked refresh token
)


@dataclass
class Fault:
    """A failure to inject; ``endpoint`` is ``token``, ``introspect``, ``revoke`` or ``api``."""

    kind: str
    status: int = 500
    retry_after: float | None = None
    endpoint: str = "token"
    times: int = 1
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault kind {self.kind!r}; pick one of {FAULT_KINDS}.")


@dataclass
class FakeResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class FakeTimeout(Exception):
    """Raised by :meth:`FakeHubSpot.handle` when a ``timeout`` fault fires."""


class FakeConnectionReset(Exception):
    """Raised by :meth:`FakeHubSpot.handle` when a ``reset`` fault fires."""


class MemoryStore:
    """Keeps the fake's state in this process (tests)."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            yield self._data


class FileStore:
    """Keeps the fake's state in a JSON file, so it survives reloads and serves many processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(f"{self.path}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    data = json.loads(self.path.read_text() or "{}")
                except FileNotFoundError:
                    data = {}
                before = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != before:
                    fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".fake-hubspot-")
                    with os.fdopen(fd, "w") as handle:
                        json.dump(data, handle)
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _new_access_token() -> str:
    # Real access tokens are opaque, about 150-300 characters, and change size over time.
    return "C" + secrets.token_urlsafe(secrets.choice(range(110, 220)))


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
        #: Called with the endpoint name before each request; may return a Fault (seeded chaos).
        self.fault_plan: Callable[[str], Fault | None] | None = None
        #: Every request seen in this process: (method, path, form fields). Test-only data.
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._mock: Any = None

    # -- the consent screen ---------------------------------------------------------------

    def consent(
        self, authorize_url: str, *, approve: bool = True, portal_id: int | None = None
    ) -> str:
        """What HubSpot's consent screen does: the URL it sends the browser back to."""
        query = dict(parse_qsl(urlsplit(authorize_url).query, keep_blank_values=True))
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
            portal_id = portal_id or next(iter(self.portals))
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
            return self._issue(data, portal_id, scopes or ["oauth"], None, expires_in)

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
            return self._guarded(parts.query, headers, lambda data: self._token(data, form))
        if endpoint == "introspect":
            return self._guarded(parts.query, headers, lambda data: self._introspect(data, form))
        if endpoint == "revoke":
            return self._guarded(parts.query, headers, lambda data: self._revoke(data, form))
        if endpoint == "api":
            with self.store.transaction() as data:
                return self._api(data, path, dict(parse_qsl(parts.query)), headers)
        return _error(404, "OBJECT_NOT_FOUND", f"No endpoint {method.upper()} {path}.")

    def _endpoint(self, method: str, path: str) -> str:
        prefix = f"/oauth/{self.api_version}/token"
        if method == "POST" and path == prefix:
            return "token"
        if method == "POST" and path == prefix + "/introspect":
            return "introspect"
        if method == "POST" and path == prefix + "/revoke":
            return "revoke"
        if method == "GET" and path in ("/account-info/v3/details", "/crm/v3/objects/contacts"):
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
            return FakeResponse(200, b'{"access_token": "Cabc", "refresh_tok', _JSON)
        if fault.kind == "non_json":
            return FakeResponse(
                fault.status if fault.status >= 400 and fault.status != 500 else 502,
                b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                {"Content-Type": "text/html"},
            )
        if fault.kind == "missing_fields":
            return _json(200, {"token_type": "bearer", "expires_in": self.access_token_lifetime})
        if fault.kind == "invalid_grant":
            return _oauth_error("invalid_grant", "BAD_REFRESH_TOKEN", "missing or unknown token")

        extra = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        category = "RATE_LIMITS" if fault.status == 429 else "INTERNAL_ERROR"
        response = _error(fault.status, category, f"Injected HTTP {fault.status}.")
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
            return _oauth_error("invalid_request", "BAD_REQUEST", "Secrets belong in the body.")
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _oauth_error(
                "invalid_request", "BAD_REQUEST", "Send application/x-www-form-urlencoded."
            )
        with self.store.transaction() as data:
            return answer(data)

    def _client_error(self, form: dict[str, str]) -> FakeResponse | None:
        if form.get("client_id") != self.client_id:
            return _oauth_error("invalid_client", "BAD_CLIENT_ID", "missing or unknown client id")
        if form.get("client_secret") != self.client_secret:
            return _oauth_error(
                "invalid_client", "BAD_CLIENT_SECRET", "missing or invalid client secret"
            )
        return None

    def _issue(
        self,
        data: dict[str, Any],
        portal_id: int,
        scopes: list[str],
        refresh_token: str | None,
        expires_in: int | None = None,
    ) -> dict[str, Any]:
        portal = self.portals.get(portal_id, {})
        if refresh_token is None:
            refresh_token = f"{portal.get('hublet', 'na1')}-{uuid.uuid4()}"
            data.setdefault("refresh_tokens", {})[refresh_token] = {
                "portal_id": portal_id,
                "scopes": scopes,
                "revoked": False,
            }
        lifetime = self.access_token_lifetime if expires_in is None else expires_in
        access_token = _new_access_token()
        data.setdefault("access_tokens", {})[access_token] = {
            "portal_id": portal_id,
            "scopes": scopes,
            "expires_at": self.clock() + lifetime,
            "refresh_token": refresh_token,
        }
        body: dict[str, Any] = {
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_in": lifetime,
            "token_type": "bearer",
            "token_use": "access_token",
        }
        if self.include_token_metadata:
            body.update(hub_id=portal_id, scopes=scopes, user_id=portal.get("user_id", 1))
        return body

    def _token(self, data: dict[str, Any], form: dict[str, str]) -> FakeResponse:
        grant_type = form.get("grant_type")
        if grant_type not in ("authorization_code", "refresh_token"):
            return _oauth_error("unsupported_grant_type", "BAD_GRANT_TYPE", "unknown grant_type")
        client_error = self._client_error(form)
        if client_error is not None:
            return client_error
        if grant_type == "authorization_code":
            grant = data.get("codes", {}).pop(form.get("code", ""), None)
            if grant is None:
                return _oauth_error("invalid_grant", "BAD_AUTH_CODE", "missing or unknown code")
            if grant["expires_at"] < self.clock():
                return _oauth_error("invalid_grant", "EXPIRED_AUTH_CODE", "code expired")
            if grant["redirect_uri"] != form.get("redirect_uri"):
                return _oauth_error(
                    "invalid_grant",
                    "MISMATCH_REDIRECT_URI_AUTH_CODE",
                    "redirect_uri does not match the one used for the code",
                )
            return _json(200, self._issue(data, grant["portal_id"], grant["scopes"], None))
        old = form.get("refresh_token", "")
        calls = data.setdefault("refresh_calls", {})
        calls[old] = calls.get(old, 0) + 1
        refresh_grant = data.get("refresh_tokens", {}).get(old)
        if refresh_grant is None or refresh_grant.get("revoked"):
            return _oauth_error("invalid_grant", "BAD_REFRESH_TOKEN", "missing or unknown token")
        keep: str | None = old
        if self.rotate_refresh_tokens:
            refresh_grant["revoked"] = True
            keep = None
        body = self._issue(data, refresh_grant["portal_id"], refresh_grant["scopes"], keep)
        return _json(200, body)

    def _introspect(self, data: dict[str, Any], form: dict[str, str]) -> FakeResponse:
        client_error = self._client_error(form)
        if client_error is not None:
            return client_error
        token = form.get("token", "")
        now = self.clock()
        access = data.get("access_tokens", {}).get(token)
        refresh = data.get("refresh_tokens", {}).get(token)
        if access is not None and access["expires_at"] > now:
            portal_id, scopes, use = access["portal_id"], access["scopes"], "access_token"
        elif refresh is not None and not refresh.get("revoked"):
            portal_id, scopes, use = refresh["portal_id"], refresh["scopes"], "refresh_token"
        else:
            return _json(200, {"active": False})
        portal = self.portals.get(portal_id, {})
        body: dict[str, Any] = {
            "active": True,
            "app_id": 1000001,
            "client_id": self.client_id,
            "hub_domain": portal.get("hub_domain", f"portal-{portal_id}.hubspot.com"),
            "hub_id": portal_id,
            "is_private_distribution": False,
            "scopes": scopes,
            "token": token,
            "token_type": "bearer",
            "token_use": use,
            "user": portal.get("user", "user@example.com"),
            "user_id": portal.get("user_id", 1),
        }
        if use == "access_token":
            body["expires_in"] = int(access["expires_at"] - now)
            body["signed_access_token"] = {
                "appId": 1000001,
                "expiresAt": int(access["expires_at"] * 1000),
                "hubId": portal_id,
                "hublet": portal.get("hublet", "na1"),
                "scopes": "fake",
                "userId": portal.get("user_id", 1),
                "isUserLevel": False,
                "isServiceAccount": False,
                "isPrivateDistribution": False,
            }
        return _json(200, body)

    def _revoke(self, data: dict[str, Any], form: dict[str, str]) -> FakeResponse:
        client_error = self._client_error(form)
        if client_error is not None:
            return client_error
        token = form.get("token", "")
        grant = data.get("refresh_tokens", {}).get(token)
        if grant is not None:
            grant["revoked"] = True
            for access in data.get("access_tokens", {}).values():
                if access["refresh_token"] == token:
                    access["expires_at"] = 0
        return FakeResponse(204)

    def _api(
        self, data: dict[str, Any], path: str, query: dict[str, str], headers: dict[str, str]
    ) -> FakeResponse:
        match = re.fullmatch(r"Bearer (\S+)", headers.get("authorization", ""))
        grant = data.get("access_tokens", {}).get(match.group(1)) if match else None
        if grant is None:
            return _error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
        if grant["expires_at"] <= self.clock():
            return _error(401, "EXPIRED_AUTHENTICATION", "The OAuth token used has expired.")
        portal_id = grant["portal_id"]
        portal = self.portals.get(portal_id, {})
        if path == "/account-info/v3/details":
            return _json(
                200,
                {
                    "portalId": portal_id,
                    "accountType": "STANDARD",
                    "timeZone": "Europe/Berlin" if portal.get("hublet") == "eu1" else "US/Eastern",
                    "companyCurrency": "EUR" if portal.get("hublet") == "eu1" else "USD",
                    "additionalCurrencies": [],
                    "uiDomain": "app-eu1.hubspot.com"
                    if portal.get("hublet") == "eu1"
                    else "app.hubspot.com",
                    "dataHostingLocation": portal.get("hublet", "na1"),
                },
            )
        if "crm.objects.contacts.read" not in grant["scopes"]:
            return _error(403, "MISSING_SCOPES", "This app lacks crm.objects.contacts.read.")
        raw_limit = query.get("limit", "10")
        limit = max(1, min(100, int(raw_limit) if raw_limit.isdigit() else 10))
        people = [("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing")]
        domain = portal.get("hub_domain", "example.com").split(".")[0]
        results = [
            {
                "id": str(index + 1),
                "properties": {
                    "firstname": first,
                    "lastname": last,
                    "email": f"{first.lower()}@{domain}.example",
                },
                "archived": False,
            }
            for index, (first, last) in enumerate(people[:limit])
        ]
        return _json(200, {"results": results})

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


class FakeHubSpotHandler(BaseHTTPRequestHandler):
    """Serves one TCP connection of a :class:`FakeHubSpotServer` (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024  # headers and body leave in one send()
    server: FakeHubSpotServer

    def setup(self) -> None:
        super().setup()
        # No Nagle delay: answers are small and the client waits for each one.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.serve_fake()

    def do_POST(self) -> None:
        self.serve_fake()

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def serve_fake(self) -> None:
        body = self.read_body()
        server = self.server
        server.received.set()
        try:
            answer = server.fake.handle(self.command, self.path, dict(self.headers), body)
        except FakeTimeout:
            server.handled.set()
            server.closing.wait(server.timeout_hold)  # say nothing until the client gives up
            self.close_connection = True
            return
        except FakeConnectionReset:
            server.handled.set()
            self.close_connection = True
            return
        server.handled.set()
        server.answers.append(answer.status)  # before the client can see it
        try:
            self.reply(answer.status, answer.body, answer.headers)
        except OSError:  # the client went away while we were answering
            self.close_connection = True
            return
        server.answered.set()

    def reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class FakeHubSpotServer(ThreadingHTTPServer):
    """``FakeHubSpot`` over real HTTP on 127.0.0.1, for code in other processes.

    ::

        with FakeHubSpotServer() as server:       # listens on a free port
            env["HUBSPOT_API_BASE_URL"] = server.url
            server.fake.issue_tokens(12345678)

    The events ``received``, ``handled`` and ``answered`` (set once an answer was
    written) and the ``answers`` list (each status as it is sent) let a test act at a
    precise moment, e.g. kill a client mid-refresh.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        fake: FakeHubSpot | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: type[FakeHubSpotHandler] = FakeHubSpotHandler,
        timeout_hold: float = 30.0,
    ) -> None:
        super().__init__((host, port), handler)
        self.fake = fake or FakeHubSpot(api_base_url=self.url)
        self.timeout_hold = timeout_hold
        self.received = threading.Event()
        self.handled = threading.Event()
        self.answered = threading.Event()
        self.closing = threading.Event()
        self.answers: list[int] = []
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeHubSpotServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fake-hubspot")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeHubSpotServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


_JSON = {"Content-Type": "application/json;charset=utf-8"}


def _json(status: int, body: dict[str, Any]) -> FakeResponse:
    return FakeResponse(status, json.dumps(body).encode(), dict(_JSON))


def _error(status: int, category: str, message: str) -> FakeResponse:
    return _json(
        status,
        {
            "status": "error",
            "message": message,
            "category": category,
            "correlationId": str(uuid.uuid4()),
        },
    )


def _oauth_error(error: str, status: str, message: str) -> FakeResponse:
    return _json(
        400,
        {
            "error": error,
            "error_description": message,
            "status": status,
            "message": message,
            "category": "BAD_REQUEST",
            "correlationId": str(uuid.uuid4()),
        },
    )


def _app_settings() -> Any:
    """The app's settings if Django is configured, else ``None`` (plain scripts)."""
    try:
        from django.conf import settings

        if not settings.configured:
            return None
        from .conf import app_settings

        return app_settings
    except ImportError:  # pragma: no cover - Django is a dependency
        return None
