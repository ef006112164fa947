"""Django 5.1+'s ``LoginRequiredMiddleware``: every view needs a login unless it opts out."""

from tests.sites.base import *  # noqa: F403

MIDDLEWARE = [*MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]  # noqa: F405
