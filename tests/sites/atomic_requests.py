"""``ATOMIC_REQUESTS = True``: every view runs in a transaction that an error rolls back."""

from tests.sites.base import *  # noqa: F403

DATABASES["default"]["ATOMIC_REQUESTS"] = True  # noqa: F405
