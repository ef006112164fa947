"""pytest fixtures for projects that use hubspot_connect (registered as a pytest plugin).

pytest loads this module for every project that has the package installed, so it imports
nothing but pytest at import time: the fake is imported when a test asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .fake import FakeHubSpot


@pytest.fixture
def fake_hubspot() -> Iterator[FakeHubSpot]:
    """A :class:`~hubspot_connect.testing.FakeHubSpot` that every ``requests`` call reaches.

    It uses the client id and secret of your settings, so your own code and the app's
    views run unchanged against it.
    """
    from .fake import FakeHubSpot

    with FakeHubSpot() as hubspot:
        yield hubspot
