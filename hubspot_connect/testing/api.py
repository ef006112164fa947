"""The fake's API endpoints: what HubSpot's REST API answers a portal's access token."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .wire import FakeResponse, error_response, json_response

if TYPE_CHECKING:
    from .fake import FakeHubSpot


ACCOUNT_DETAILS = ("/account-info/2026-03/details", "/account-info/v3/details")
CONTACTS = ("/crm/objects/2026-03/contacts", "/crm/v3/objects/contacts")
#: The API paths the fake answers: HubSpot's dated paths, and the undated v3 ones.
PATHS = (*ACCOUNT_DETAILS, *CONTACTS)


def answer(
    fake: FakeHubSpot,
    data: dict[str, Any],
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
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
    portal = fake.portals.get(portal_id, {})
    if path in ACCOUNT_DETAILS:
        return json_response(
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
        return error_response(403, "MISSING_SCOPES", "This app lacks crm.objects.contacts.read.")
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
    return json_response(200, {"results": results})
