"""The example project (``make demo``'s site) plus an ``async def`` view, served over ASGI.

Everything else comes from ``example_project.settings`` and the environment (the test
sets DATABASE_URL, FIELD_ENCRYPTION_KEY, HUBSPOT_FAKE_STORE and DEMO_PORT).
"""

from example_project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.sites.asgi_urls"
