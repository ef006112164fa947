"""FakeHubSpot over real HTTP for the crash tests: the package's own FakeHubSpotServer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hubspot_connect.testing import FakeHubSpot, FakeHubSpotServer

__all__ = ["FakeHubSpotServer", "serve"]


@contextmanager
def serve(fake: FakeHubSpot) -> Iterator[FakeHubSpotServer]:
    with FakeHubSpotServer(fake) as server:
        yield server
