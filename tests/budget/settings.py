"""Settings for the child processes of tests/test_ratelimit.py and tests/test_api_session.py.

The test suite's settings, plus what the parent passes in the environment: the
FakeHubSpotServer (``HUBSPOT_API_BASE_URL``), the shared cache (``BUDGET_REDIS_URL`` and
``BUDGET_KEY_PREFIX``; local memory without them), the budget
(``BUDGET_RATE_LIMIT``, JSON) and the database (``DATABASE_URL``, a file database).
"""

import json
import os

from tests.settings import *  # noqa: F403

HUBSPOT_API_BASE_URL = os.environ["HUBSPOT_API_BASE_URL"]
if os.environ.get("BUDGET_REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["BUDGET_REDIS_URL"],
            "KEY_PREFIX": os.environ["BUDGET_KEY_PREFIX"],
        }
    }
if os.environ.get("BUDGET_RATE_LIMIT"):
    HUBSPOT_RATE_LIMIT = json.loads(os.environ["BUDGET_RATE_LIMIT"])
