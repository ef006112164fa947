"""pytest fixtures for projects that use hubspot_connect (registered as a pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .testing import FakeHubSpot


@pytest.fixture
def fake_hubspot() -> Iterator[FakeHubSpot]:
    """A :class:`~hubspot_connect.testing.FakeHubSpot` that every ``requests`` call reaches.

    It uses the client id and secret of your settings, so your own code and the app's
    views run unchanged against it.
    """
    with FakeHubSpot() as hubspot:
        yield hubspot
