"""List filters of the connection admin."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..conf import app_settings
from ..models import (
    ACTIVE,
    DISCONNECTED,
    GRANTED_TEXT,
    NEEDS_REAUTH,
    HubSpotConnection,
    missing_scopes_q,
)
from .display import EXPIRING, EXPIRING_SOON, STATUS_LABELS, expiring_q


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Iterable[tuple[str, Any]]:
        return list(STATUS_LABELS.items())

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[HubSpotConnection]
    ) -> QuerySet[HubSpotConnection]:
        now = timezone.now()
        value = self.value()
        if value == ACTIVE:
            return queryset.filter(status=ACTIVE, expires_at__gt=now + EXPIRING_SOON)
        if value == EXPIRING:
            return queryset.filter(expiring_q(now))
        if value in (NEEDS_REAUTH, DISCONNECTED):
            return queryset.filter(status=value)
        return queryset


class ExpiresFilter(admin.SimpleListFilter):
    title = _("access token expires")
    parameter_name = "expires"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Iterable[tuple[str, Any]]:
        return [
            ("expired", _("already expired")),
            ("15m", _("within 15 minutes")),
            ("1h", _("within 1 hour")),
            ("later", _("in more than 1 hour")),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[HubSpotConnection]
    ) -> QuerySet[HubSpotConnection]:
        now = timezone.now()
        bounds = {"expired": timedelta(0), "15m": EXPIRING_SOON, "1h": timedelta(hours=1)}
        value = self.value()
        if value in bounds:
            return queryset.filter(expires_at__lte=now + bounds[value])
        if value == "later":
            return queryset.filter(expires_at__gt=now + timedelta(hours=1))
        return queryset


class ScopesFilter(admin.SimpleListFilter):
    """Connections not granted every scope HUBSPOT_SCOPES requires (reconnect to grant)."""

    title = _("scopes")
    parameter_name = "scopes"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Iterable[tuple[str, Any]]:
        return [("missing", _("missing required scopes")), ("granted", _("all granted"))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[HubSpotConnection]
    ) -> QuerySet[HubSpotConnection]:
        value = self.value()
        if value not in ("missing", "granted"):
            return queryset
        missing = missing_scopes_q(app_settings.SCOPES)
        queryset = queryset.exclude(status=DISCONNECTED)
        if missing is None:  # nothing is required, so nothing is missing
            return queryset.none() if value == "missing" else queryset
        granted = queryset.alias(**{GRANTED_TEXT: Cast("scopes", TextField())})
        return granted.filter(missing if value == "missing" else ~missing)


class RefreshFilter(admin.SimpleListFilter):
    title = _("refreshes")
    parameter_name = "refresh"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Iterable[tuple[str, Any]]:
        return [("failing", _("failing (being retried)")), ("ok", _("last one succeeded"))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[HubSpotConnection]
    ) -> QuerySet[HubSpotConnection]:
        if self.value() == "failing":
            return queryset.filter(status=ACTIVE, refresh_failures__gt=0)
        if self.value() == "ok":
            return queryset.filter(status=ACTIVE, refresh_failures=0)
        return queryset
