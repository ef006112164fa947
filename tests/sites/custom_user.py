"""A custom user model: login by email, no ``username`` field, a UUID primary key."""

from tests.sites.base import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.sites.accounts"]  # noqa: F405
AUTH_USER_MODEL = "accounts.EmailUser"
