"""``i18n_patterns`` with HUBSPOT_REDIRECT_URI fixed to the English callback URL."""

from tests.sites.i18n import *  # noqa: F403

HUBSPOT_REDIRECT_URI = "https://testserver/en/hubspot/callback/"
