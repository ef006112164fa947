"""The fake's API endpoints: what HubSpot's REST API answers a portal's access token.

Besides the answers it enforces HubSpot's limits for OAuth apps per portal, as HubSpot
does (:class:`RateLimits`: 110 requests per rolling 10 s, 5 per second on CRM search, an
optional daily limit), answering 429 with HubSpot's body and ``Retry-After``, and it
remembers when each request arrived, so a test can ask how many arrived in the busiest
window (:meth:`RateLimits.max_in_window`).
"""

from __future__ import annotations

import bisect
import json
import math
import re
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .wire import FakeResponse, error_response, json_response

if TYPE_CHECKING:
    from .fake import FakeHubSpot


ACCOUNT_DETAILS = ("/account-info/2026-03/details", "/account-info/v3/details")
CONTACTS = ("/crm/objects/2026-03/contacts", "/crm/v3/objects/contacts")
CONTACT_SEARCH = tuple(f"{path}/search" for path in CONTACTS)
UNINSTALL = "/appinstalls/2026-03/external-install"
#: The API paths the fake answers to GET: HubSpot's dated paths, and the undated v3 ones.
PATHS = (*ACCOUNT_DETAILS, *CONTACTS)
#: Every (method, path) the fake's API answers.
ROUTES = frozenset(
    [("GET", path) for path in PATHS]
    + [("POST", path) for path in CONTACT_SEARCH]
    + [("DELETE", UNINSTALL)]
)
PEOPLE = [("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing")]
CREATED = "2026-01-05T09:30:00.000Z"

Limit = tuple[int, float]


def handles(method: str, path: str) -> bool:
    return (method, path) in ROUTES


def rate_limit_response(policy: str, retry_after: float | None) -> FakeResponse:
    """HubSpot's 429: ``errorType`` RATE_LIMIT and the ``policyName`` that was hit."""
    response = json_response(
        429,
        {
            "status": "error",
            "message": f"You have reached your {policy.lower()} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": policy,
            "category": "RATE_LIMITS",
        },
    )
    if retry_after is not None:
        response.headers["Retry-After"] = f"{retry_after:g}"
    return response


class RateLimits:
    """HubSpot's per-portal limits, and a record of when each API request arrived.

    ``api`` and ``search`` are ``(requests, seconds)`` over a rolling window, ``daily`` a
    number of requests (not reset: a test's day); ``None`` switches one off. Requests
    HubSpot turned away with a 429 do not use up the budget, as at HubSpot.
    """

    def __init__(
        self,
        api: Limit | None = (110, 10),
        search: Limit | None = (5, 1),
        daily: int | None = None,
    ) -> None:
        self.api, self.search, self.daily = api, search, daily
        self._lock = threading.Lock()
        self.arrivals: dict[tuple[int, str], list[float]] = {}  # (portal, kind) -> times
        self.served: dict[tuple[int, str], list[float]] = {}
        self.answered_429: dict[int, int] = {}

    def admit(
        self, portal_id: int, clock: Callable[[], float], *, search: bool
    ) -> FakeResponse | None:
        """Record a request; ``None`` if HubSpot would serve it, else HubSpot's 429."""
        kinds = ("api", "search") if search else ("api",)
        with self._lock:
            now = clock()  # read under the lock: every list stays in time order
            for kind in kinds:
                self.arrivals.setdefault((portal_id, kind), []).append(now)
            refusal = self._refusal(portal_id, now, kinds)
            if refusal is not None:
                self.answered_429[portal_id] = self.answered_429.get(portal_id, 0) + 1
                return refusal
            for kind in kinds:
                self.served.setdefault((portal_id, kind), []).append(now)
        return None

    def _refusal(self, portal_id: int, now: float, kinds: tuple[str, ...]) -> FakeResponse | None:
        served = self.served.get((portal_id, "api"), [])
        if self.daily is not None and len(served) >= self.daily:
            return rate_limit_response("DAILY", None)
        for kind, limit, policy in (
            ("search", self.search, "SECONDLY"),
            ("api", self.api, "TEN_SECONDLY_ROLLING"),
        ):
            if kind not in kinds or limit is None:
                continue
            times = self.served.get((portal_id, kind), [])
            requests, seconds = limit
            start = bisect.bisect_right(times, now - seconds)
            if len(times) - start >= requests:  # this one would be one too many
                wait = times[len(times) - requests] + seconds - now
                return rate_limit_response(policy, max(1, math.ceil(wait)))
        return None

    def count(self, portal_id: int, *, search: bool = False) -> int:
        """How many API requests (search requests only: ``search=True``) arrived."""
        with self._lock:
            return len(self.arrivals.get((portal_id, "search" if search else "api"), []))

    def max_in_window(self, portal_id: int, seconds: float, *, search: bool = False) -> int:
        """The most requests that arrived within any ``seconds`` (a rolling window)."""
        with self._lock:
            times = sorted(self.arrivals.get((portal_id, "search" if search else "api"), []))
        most, start = 0, 0
        for end, arrived in enumerate(times):
            while arrived - times[start] >= seconds:
                start += 1
            most = max(most, end - start + 1)
        return most

    def refused(self, portal_id: int | None = None) -> int:
        """How many 429s the limits answered (for one portal, or all)."""
        with self._lock:
            if portal_id is None:
                return sum(self.answered_429.values())
            return self.answered_429.get(portal_id, 0)

    def reset(self) -> None:
        with self._lock:
            self.arrivals.clear()
            self.served.clear()
            self.answered_429.clear()


def answer(
    fake: FakeHubSpot,
    data: dict[str, Any],
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes = b"",
) -> FakeResponse:
    match = re.fullmatch(r"Bearer (\S+)", headers.get("authorization", ""))
    grant = data.get("access_tokens", {}).get(match.group(1)) if match else None
    if grant is None:
        return error_response(
            401, "INVALID_AUTHENTICATION", "Authentication credentials not found."
        )
    if grant["expires_at"] <= fake.clock():
        return error_response(401, "EXPIRED_AUTHENTICATION", "The OAuth token used has expired.")
    portal_id = grant["portal_id"]
    refusal = fake.limits.admit(portal_id, fake.clock, search=path in CONTACT_SEARCH)
    if refusal is not None:
        return refusal
    portal = fake.portals.get(portal_id, {})
    if path in ACCOUNT_DETAILS:
        return json_response(200, account_details(portal_id, portal))
    if path == UNINSTALL:
        uninstall(data, portal_id)
        return FakeResponse(204)
    if "crm.objects.contacts.read" not in grant["scopes"]:
        return error_response(403, "MISSING_SCOPES", "This app lacks crm.objects.contacts.read.")
    domain = portal.get("hub_domain", "example.com").split(".")[0]
    if path in CONTACT_SEARCH:
        try:
            search = json.loads(body or b"{}")
        except ValueError:
            return error_response(400, "VALIDATION_ERROR", "The body is not JSON.")
        limit = search.get("limit", 10) if isinstance(search, dict) else 10
        results = contacts(domain, limit if isinstance(limit, int) else 10)
        return json_response(200, {"total": len(results), "results": results})
    raw_limit = query.get("limit", "10")
    results = contacts(domain, int(raw_limit) if raw_limit.isdigit() else 10)
    return json_response(200, {"results": results})


def account_details(portal_id: int, portal: dict[str, Any]) -> dict[str, Any]:
    europe = portal.get("hublet") == "eu1"
    return {
        "portalId": portal_id,
        "accountType": "STANDARD",
        "timeZone": "Europe/Berlin" if europe else "US/Eastern",
        "companyCurrency": "EUR" if europe else "USD",
        "additionalCurrencies": [],
        "utcOffset": "+01:00" if europe else "-05:00",
        "utcOffsetMilliseconds": 3600000 if europe else -18000000,
        "uiDomain": "app-eu1.hubspot.com" if europe else "app.hubspot.com",
        "dataHostingLocation": portal.get("hublet", "na1"),
    }


def contacts(domain: str, limit: int) -> list[dict[str, Any]]:
    return [
        {
            "id": str(index + 1),
            "properties": {
                "firstname": first,
                "lastname": last,
                "email": f"{first.lower()}@{domain}.example",
                "createdate": CREATED,
                "hs_object_id": str(index + 1),
            },
            "createdAt": CREATED,
            "updatedAt": CREATED,
            "archived": False,
        }
        for index, (first, last) in enumerate(PEOPLE[: max(1, min(100, limit))])
    ]


def uninstall(data: dict[str, Any], portal_id: int) -> None:
    """The app is removed from the account: its refresh tokens are revoked (refresh:
    invalid_grant) and its access tokens stop working (API: 401)."""
    for grant in data.get("refresh_tokens", {}).values():
        if grant["portal_id"] == portal_id:
            grant["revoked"] = True
    tokens = data.get("access_tokens", {})
    for token in [token for token, grant in tokens.items() if grant["portal_id"] == portal_id]:
        del tokens[token]
    data.setdefault("uninstalled", []).append(portal_id)
