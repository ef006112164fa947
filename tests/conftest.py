from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.dispatch import Signal
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hubspot_connect.models import HubSpotConnection
from hubspot_connect.testing import FakeHubSpot


@pytest.fixture
def connector(db: None) -> User:
    """A user allowed to connect portals (has hubspot_connect.add_hubspotconnection)."""
    user = User.objects.create_user("connector", "connector@example.com", "pw")
    user.user_permissions.add(Permission.objects.get(codename="add_hubspotconnection"))
    return user


@pytest.fixture
def connector_client(client: Client, connector: User) -> Client:
    client.force_login(connector)
    return client


@pytest.fixture
def connect_portal_via_views(
    connector_client: Client, fake_hubspot: FakeHubSpot
) -> Callable[..., Any]:
    """Run the whole browser flow through the views; returns the callback response."""

    def run(portal_id: int = 12345678, next_url: str | None = None) -> Any:
        # Only a POST starts a flow (a GET shows the confirmation page).
        form = {} if next_url is None else {"next": next_url}
        start = connector_client.post(reverse("hubspot_connect:connect"), form)
        assert start.status_code == 302
        return connector_client.get(fake_hubspot.approve(start["Location"], portal_id=portal_id))

    return run


@pytest.fixture
def make_connection(db: None, fake_hubspot: FakeHubSpot) -> Callable[..., HubSpotConnection]:
    """A stored connection whose tokens FakeHubSpot really issued."""

    def make(
        portal_id: int = 12345678, *, expires_in: int = 1800, **fields: Any
    ) -> HubSpotConnection:
        issued = fake_hubspot.issue_tokens(portal_id, ["oauth", "crm.objects.contacts.read"])
        values: dict[str, Any] = {
            "portal_id": portal_id,
            "hub_domain": f"portal-{portal_id}.hubspot.com",
            "scopes": issued["scopes"],
            "access_token": issued["access_token"],
            "refresh_token": issued["refresh_token"],
            "expires_at": timezone.now() + timedelta(seconds=expires_in),
        }
        values.update(fields)
        return HubSpotConnection.objects.create(**values)

    return make


@pytest.fixture
def received() -> Iterator[Callable[[Signal], list[dict[str, Any]]]]:
    """Collects what a signal sends: ``calls = received(signal)``."""
    connected: list[tuple[Signal, Callable[..., None]]] = []

    def listen(signal: Signal) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []

        def receiver(**kwargs: Any) -> None:
            calls.append(kwargs)

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return calls

    yield listen
    for signal, receiver in connected:
        signal.disconnect(receiver)
