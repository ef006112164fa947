"""Settings for the child processes of tests/test_concurrency.py.

The test suite's settings, with the database (``DATABASE_URL``, a file SQLite database
or PostgreSQL that every process sees), the FakeHubSpot served over real HTTP
(``HUBSPOT_API_BASE_URL``) and optionally a short ``HUBSPOT_REFRESH_LEASE`` taken from
the environment.
"""

import os

from tests.settings import *  # noqa: F403

HUBSPOT_API_BASE_URL = os.environ["HUBSPOT_API_BASE_URL"]
if os.environ.get("HUBSPOT_REFRESH_LEASE"):
    HUBSPOT_REFRESH_LEASE = int(os.environ["HUBSPOT_REFRESH_LEASE"])
