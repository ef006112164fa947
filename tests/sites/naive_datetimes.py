"""``USE_TZ = False`` in a time zone far from UTC (and with a half-hour offset)."""

from tests.sites.base import *  # noqa: F403

USE_TZ = False
TIME_ZONE = "Asia/Kolkata"
