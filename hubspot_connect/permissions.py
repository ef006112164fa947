"""Who may connect a HubSpot portal."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.module_loading import import_string

from .conf import DEFAULT_PERMISSION, app_settings


def has_connect_permission(request: HttpRequest) -> bool:
    """Whether the user may connect a portal, per HUBSPOT_CONNECT_PERMISSION.

    By default: a user with the ``hubspot_connect.add_hubspotconnection`` permission.
    """
    path = app_settings.CONNECT_PERMISSION
    if path:
        check = import_string(path)
        return bool(check(request))
    return bool(request.user.is_authenticated and request.user.has_perm(DEFAULT_PERMISSION))
