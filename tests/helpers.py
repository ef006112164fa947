"""Small helpers shared by the token tests."""

from __future__ import annotations

from collections.abc import Callable

from hubspot_connect.models import HubSpotConnection
from hubspot_connect.testing import FakeHubSpot

MakeConnection = Callable[..., HubSpotConnection]
OTHER_KEY = "n1TT9zQvZ8fX6mO7cH5a0s8lT1y2hR3bK4dG9eW0pAc="


def stored(connection: HubSpotConnection) -> HubSpotConnection:
    """The row as the database holds it now."""
    return HubSpotConnection.objects.get(pk=connection.pk)


def token_calls(fake: FakeHubSpot) -> int:
    return sum(1 for method, path, _ in fake.requests if path.endswith("/token"))


def assert_no_secrets(text: str, connection: HubSpotConnection) -> None:
    for secret in (connection.access_token, connection.refresh_token, "test-client-secret-8d1f0c"):
        assert secret not in text
