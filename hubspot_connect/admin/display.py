"""What the connection admin shows: status, links to HubSpot, times."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..models import ACTIVE, DISCONNECTED, NEEDS_REAUTH, HubSpotConnection

#: An active connection whose access token expires within this window is "expiring soon".
EXPIRING_SOON = timedelta(minutes=15)
EXPIRING = "expiring"  # the fourth, computed status shown next to the model's three
TOKEN_FIELDS = ("access_token", "refresh_token")
_HUBLET = re.compile(r"^[a-z]{2,4}\d{1,2}$")
# A host name under hubspot.com, nothing else: no scheme, port, path or user part.
_UI_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+hubspot\.com$")


def hubspot_portal_url(connection: HubSpotConnection) -> str:
    """The portal's account settings in HubSpot, on the host HubSpot named for it.

    ``ui_domain`` (what ``/account-info/…/details`` said when it connected); for
    connections made before that was recorded, a host guessed from the hublet.
    """
    host = connection.ui_domain.strip().lower()
    if not _UI_DOMAIN.fullmatch(host):
        hublet = connection.hublet.lower()
        host = "app.hubspot.com"
        if hublet != "na1" and _HUBLET.fullmatch(hublet):
            host = f"app-{hublet}.hubspot.com"
    return f"https://{host}/settings/{int(connection.portal_id)}"


def display_status(connection: HubSpotConnection, now: datetime | None = None) -> str:
    """``active``, ``expiring`` (active, token expires within 15 minutes or has), or the status."""
    if connection.status != ACTIVE:
        return connection.status
    if connection.expires_at is None:
        return EXPIRING
    if connection.expires_at <= (now or timezone.now()) + EXPIRING_SOON:
        return EXPIRING
    return ACTIVE


STATUS_LABELS = {
    ACTIVE: _("active"),
    EXPIRING: _("expiring soon"),
    NEEDS_REAUTH: _("needs re-auth"),
    DISCONNECTED: _("disconnected"),
}


def expiring_q(now: datetime) -> Q:
    return Q(status=ACTIVE) & (Q(expires_at__isnull=True) | Q(expires_at__lte=now + EXPIRING_SOON))


def local_time(value: datetime) -> datetime:
    """``value`` in the current time zone; naive datetimes (``USE_TZ = False``) as they are."""
    return timezone.localtime(value) if timezone.is_aware(value) else value


def time_tag(value: datetime, text: str, *, format: str = "DATETIME_FORMAT") -> SafeString:
    """``<time>`` with the full date and time as its tooltip."""
    local = local_time(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(),
        date_format(local, "DATETIME_FORMAT"),
        text,
    )


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "-"
    now = now or timezone.now()
    if now - value < timedelta(minutes=1):  # also a clock a little ahead of this one
        return time_tag(value, gettext("just now"))
    return time_tag(value, gettext("%(time)s ago") % {"time": timesince(value, now, depth=1)})
