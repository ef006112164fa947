"""hubspot_connect.account and the account-details wire format (hubspot_connect.wire)."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from hubspot_connect.account import fetch_account_details, uninstall_app
from hubspot_connect.exceptions import HubSpotOAuthError, HubSpotUnavailable
from hubspot_connect.testing import FakeHubSpot
from hubspot_connect.wire import AccountDetails, account_details
from tests.helpers import MakeConnection

DETAILS = "https://api.hubapi.com/account-info/2026-03/details"


def test_account_details_are_read_and_cut_to_the_fields() -> None:
    details = account_details(
        {"uiDomain": "x" * 400, "timeZone": 5, "accountType": " PARTNER ", "portalId": 1}
    )
    assert details == AccountDetails(ui_domain="x" * 255, account_type="PARTNER")
    assert details.fields() == {"ui_domain": "x" * 255, "account_type": "PARTNER"}
    assert account_details(["not", "an", "object"]).fields() == {}


def test_fetch_account_details_with_a_new_token(fake_hubspot: FakeHubSpot) -> None:
    token = fake_hubspot.issue_tokens(87654321)["access_token"]
    details = fetch_account_details(87654321, token)
    assert details.fields() == {
        "ui_domain": "app-eu1.hubspot.com",
        "data_hosting_location": "eu1",
        "account_type": "STANDARD",
        "time_zone": "Europe/Berlin",
    }


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        (
            {"status": 401, "json": {"category": "INVALID_AUTHENTICATION"}},
            HubSpotOAuthError,
            "401",
        ),
        ({"status": 503, "json": {}}, HubSpotUnavailable, "server error"),
        ({"status": 200, "body": "[1, 2]"}, HubSpotUnavailable, "not a JSON object"),
        ({"status": 200, "body": "<html>"}, HubSpotUnavailable, "not a JSON object"),
    ],
)
def test_fetch_account_details_failures(
    answer: dict[str, Any], error: type[Exception], words: str
) -> None:
    token = "C" + "t" * 150
    with responses.RequestsMock() as mock:
        mock.get(DETAILS, **answer)
        with pytest.raises(error, match=words) as caught:
            fetch_account_details(12345678, token)
        assert len(mock.calls) == 1  # one attempt: a user is waiting
    assert token not in str(caught.value)
    assert "GET /account-info/2026-03/details" in str(caught.value)


def test_uninstall_app_says_whether_it_removed_the_app(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    connection = make_connection()
    assert uninstall_app(connection) is True
    fake_hubspot.fail("status", status=404, endpoint="api")
    assert uninstall_app(connection) is False  # the token is gone: a 401 and a refresh later
