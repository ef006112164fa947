"""Test helpers for sites that use hubspot_connect: a fake HubSpot, in memory or over HTTP.

* :class:`FakeHubSpot`: HubSpot's OAuth server and a few API endpoints, in memory,
  faithful to the wire format, with switches to inject failures. ``with FakeHubSpot():``
  routes every ``requests`` call to the API base URL to it (needs ``responses``).
* :class:`FakeHubSpotServer`: the same fake over real HTTP on 127.0.0.1, for code
  running in other processes.
* the ``fake_hubspot`` pytest fixture (:mod:`hubspot_connect.testing.pytest_plugin`,
  registered automatically when the package is installed).

Nothing here imports anything platform-specific at import time.
"""

from .fake import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PORTALS, FakeHubSpot
from .server import FakeHubSpotHandler, FakeHubSpotServer
from .stores import FileStore, MemoryStore
from .wire import FAULT_KINDS, FakeConnectionReset, FakeResponse, FakeTimeout, Fault

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PORTALS",
    "FAULT_KINDS",
    "FakeConnectionReset",
    "FakeHubSpot",
    "FakeHubSpotHandler",
    "FakeHubSpotServer",
    "FakeResponse",
    "FakeTimeout",
    "Fault",
    "FileStore",
    "MemoryStore",
]
