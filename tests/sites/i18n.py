"""URLs under ``i18n_patterns`` with ``LocaleMiddleware``; HUBSPOT_REDIRECT_URI unset."""

from tests.sites.base import *  # noqa: F403

ROOT_URLCONF = "tests.sites.i18n_urls"
USE_I18N = True
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
MIDDLEWARE = [*MIDDLEWARE]  # noqa: F405
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.common.CommonMiddleware"),
    "django.middleware.locale.LocaleMiddleware",
)
del HUBSPOT_REDIRECT_URI  # noqa: F821  (built from each request: with its language prefix)
SILENCED_SYSTEM_CHECKS = ["hubspot_connect.W001"]
