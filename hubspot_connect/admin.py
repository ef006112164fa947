"""The connection admin: read-only, never shows a token, refresh and disconnect as actions.

Connections are created only by the OAuth flow, so there is no add form; the change
form is a read-only detail page; rows are never deleted (disconnecting keeps the record).
The querysets defer both token fields, so listing or viewing connections decrypts nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .exceptions import (
    HubSpotOAuthError,
    HubSpotUnavailable,
    InvalidGrant,
    PortalNotConnected,
    TokenDecryptionError,
)
from .models import ACTIVE, DISCONNECTED, NEEDS_REAUTH, HubSpotConnection
from .tokens import refresh_connection
from .views import has_connect_permission

#: An active connection whose access token expires within this window is "expiring soon".
EXPIRING_SOON = timedelta(minutes=15)
EXPIRING = "expiring"  # the fourth, computed status shown next to the model's three
TOKEN_FIELDS = ("access_token", "refresh_token")
_HUBLET = re.compile(r"^[a-z]{2,4}\d{1,2}$")
_MAX_LISTED = 20  # portal ids named in one message before "and N more"


def hubspot_portal_url(connection: HubSpotConnection) -> str:
    """The portal's account settings in HubSpot, on its hublet's host (``app-eu1`` …)."""
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


def _expiring_q(now: datetime) -> Q:
    return Q(status=ACTIVE) & (Q(expires_at__isnull=True) | Q(expires_at__lte=now + EXPIRING_SOON))


def _time_tag(value: datetime, text: str) -> SafeString:
    local = timezone.localtime(value)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(),
        date_format(local, "DATETIME_FORMAT"),
        text,
    )


def _ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "-"
    now = now or timezone.now()
    if now - value < timedelta(minutes=1):  # also a clock a little ahead of this one
        return _time_tag(value, gettext("just now"))
    return _time_tag(value, gettext("%(time)s ago") % {"time": timesince(value, now, depth=1)})


def _fill(message: str, portal_ids: Sequence[int]) -> str:
    return message % {"count": len(portal_ids), "portals": _portal_list(portal_ids)}


def _portal_list(portal_ids: Sequence[int]) -> str:
    shown = ", ".join(str(portal_id) for portal_id in portal_ids[:_MAX_LISTED])
    more = len(portal_ids) - _MAX_LISTED
    if more > 0:
        shown += " " + ngettext("and %(count)d more", "and %(count)d more", more) % {"count": more}
    return shown


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
            return queryset.filter(_expiring_q(now))
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


if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[HubSpotConnection]
else:
    _ModelAdmin = admin.ModelAdmin


@admin.register(HubSpotConnection)
class HubSpotConnectionAdmin(_ModelAdmin):
    list_display = (
        "portal",
        "hub_domain",
        "status_badge",
        "expires",
        "last_refresh",
        "failures",
        "connected",
    )
    list_display_links = ("hub_domain",)
    list_select_related = ("connected_by",)
    list_filter = (StatusFilter, ExpiresFilter)
    search_fields = (
        "portal_id",
        "hub_domain",
        "hubspot_user_email",
        "connected_by__username",
        "connected_by__email",
    )
    search_help_text = _(
        "Portal id, hub domain, HubSpot user email, or the username or email of who connected it."
    )
    exclude = TOKEN_FIELDS
    fieldsets = (
        (
            _("Portal"),
            {
                "fields": (
                    "portal",
                    "hub_domain",
                    "hublet",
                    "status_badge",
                    "hubspot_user_email",
                    "hubspot_user_id",
                    "connected_by",
                    "created_at",
                )
            },
        ),
        (_("Access"), {"fields": ("scope_list", "token_type", "expires")}),
        (
            _("Refresh"),
            {
                "fields": (
                    "last_refresh",
                    "refresh_failures",
                    "last_error",
                    "last_error_at",
                    "lease_expires_at",
                    "updated_at",
                )
            },
        ),
    )
    readonly_fields = (
        "portal",
        "hub_domain",
        "hublet",
        "status_badge",
        "hubspot_user_email",
        "hubspot_user_id",
        "connected_by",
        "created_at",
        "scope_list",
        "token_type",
        "expires",
        "last_refresh",
        "refresh_failures",
        "last_error",
        "last_error_at",
        "lease_expires_at",
        "updated_at",
    )
    actions = ("refresh_tokens", "disconnect")
    disconnect_confirmation_template = (
        "admin/hubspot_connect/hubspotconnection/disconnect_selected_confirmation.html"
    )

    # -- queryset and permissions ----------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[HubSpotConnection]:
        # Nothing the admin shows needs a token: never decrypt one to render a page.
        return super().get_queryset(request).defer(*TOKEN_FIELDS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # connections are made only by the OAuth flow

    def has_change_permission(
        self, request: HttpRequest, obj: HubSpotConnection | None = None
    ) -> bool:
        # The model permission allows the "Refresh tokens now" action; no row is ever
        # edited by hand, so the change form is always Django's read-only view.
        if obj is not None:
            return False
        return super().has_change_permission(request)

    def has_delete_permission(
        self, request: HttpRequest, obj: HubSpotConnection | None = None
    ) -> bool:
        return False  # disconnect instead: it revokes the tokens and keeps the record

    def has_disconnect_permission(self, request: HttpRequest) -> bool:
        """Disconnecting ends the site's access like deleting would: it needs ``delete``."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        columns: list[Any] = list(super().get_list_display(request))
        if has_connect_permission(request):  # offer "Reconnect" only to who may connect
            columns = ["status_and_reconnect" if c == "status_badge" else c for c in columns]
        return columns

    # -- columns and detail fields ---------------------------------------------------------

    @admin.display(description=_("portal id"), ordering="portal_id")
    def portal(self, obj: HubSpotConnection) -> str:
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer" '
            'class="hubspot-portal-link" title="{}">{}</a>',
            hubspot_portal_url(obj),
            gettext("Open portal %(portal)s in HubSpot") % {"portal": obj.portal_id},
            obj.portal_id,
        )

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: HubSpotConnection) -> str:
        status = display_status(obj)
        return format_html(
            '<span class="hubspot-badge hubspot-badge-{}">{}</span>',
            status,
            STATUS_LABELS.get(status, status),
        )

    @admin.display(description=_("token expires"), ordering="expires_at")
    def expires(self, obj: HubSpotConnection) -> str:
        if obj.expires_at is None:
            return "-"
        now = timezone.now()
        if obj.expires_at > now:
            text = gettext("in %(time)s") % {"time": timeuntil(obj.expires_at, now, depth=1)}
        else:
            text = gettext("expired %(time)s ago") % {
                "time": timesince(obj.expires_at, now, depth=1)
            }
        return _time_tag(obj.expires_at, text)

    @admin.display(description=_("last refresh"), ordering="last_refreshed_at")
    def last_refresh(self, obj: HubSpotConnection) -> str:
        return _ago(obj.last_refreshed_at)

    @admin.display(description=_("granted scopes"))
    def scope_list(self, obj: HubSpotConnection) -> str:
        scopes = [str(scope) for scope in obj.scopes or []]
        if not scopes:
            return "-"
        items = format_html_join("", "<li><code>{}</code></li>", ((scope,) for scope in scopes))
        return format_html('<ul class="hubspot-scopes">{}</ul>', items)

    @admin.display(description=_("status"), ordering="status")
    def status_and_reconnect(self, obj: HubSpotConnection) -> str:
        badge = self.status_badge(obj)
        if obj.status == ACTIVE:
            return badge
        return format_html(
            '{} <a href="{}" class="hubspot-reconnect">{}</a>',
            badge,
            self.connect_url(self.changelist_url()),
            gettext("Reconnect"),
        )

    @admin.display(description=_("failures"), ordering="refresh_failures")
    def failures(self, obj: HubSpotConnection) -> int:
        return obj.refresh_failures

    @admin.display(description=_("connected"), ordering="created_at")
    def connected(self, obj: HubSpotConnection) -> str:
        """When and by whom, in one column: the list stays readable on a laptop screen."""
        local = timezone.localtime(obj.created_at)
        when = format_html(
            '<time datetime="{}" title="{}">{}</time>',
            local.isoformat(),
            date_format(local, "DATETIME_FORMAT"),
            date_format(local, "DATE_FORMAT"),
        )
        if obj.connected_by is None:
            return when
        by = gettext("by %(user)s") % {"user": obj.connected_by}
        return format_html('{}<br><span class="hubspot-quiet">{}</span>', when, by)

    # -- URLs and pages ---------------------------------------------------------------------

    def changelist_url(self) -> str:
        opts = self.opts
        return reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist",
        )

    def connect_url(self, next_url: str) -> str:
        return reverse("hubspot_connect:connect") + "?" + urlencode({"next": next_url})

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {
            "hubspot_connect_url": (
                self.connect_url(self.changelist_url()) if has_connect_permission(request) else ""
            ),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context: dict[str, Any] = {"hubspot_portal_url": "", "hubspot_reconnect_url": ""}
        obj = self.get_object(request, object_id)
        if obj is not None:
            context["hubspot_portal_url"] = hubspot_portal_url(obj)
            if obj.status != ACTIVE and has_connect_permission(request):
                context["hubspot_reconnect_url"] = self.connect_url(request.path)
        context.update(extra_context or {})
        return super().change_view(request, object_id, form_url, extra_context=context)

    # -- actions ------------------------------------------------------------------------------

    def _full_rows(
        self, queryset: QuerySet[HubSpotConnection]
    ) -> Iterable[tuple[int, HubSpotConnection | TokenDecryptionError]]:
        """Each selected row with its tokens, loaded one by one so one bad row stays alone."""
        rows = queryset.order_by("portal_id").values_list("pk", "portal_id")
        for pk, portal_id in list(rows):
            found: list[HubSpotConnection | TokenDecryptionError]
            try:
                found = list(HubSpotConnection.objects.filter(pk=pk))  # [] if deleted meanwhile
            except TokenDecryptionError as exc:
                found = [exc]
            for row in found:
                yield portal_id, row

    @admin.action(description=_("Refresh tokens now"), permissions=["change"])
    def refresh_tokens(self, request: HttpRequest, queryset: QuerySet[HubSpotConnection]) -> None:
        refreshed: list[int] = []
        skipped: list[int] = []
        reauth: list[int] = []
        not_active: list[int] = []
        for portal_id, connection in self._full_rows(queryset):
            if isinstance(connection, TokenDecryptionError):
                self.message_user(request, _decrypt_failure(portal_id), messages.ERROR)
                continue
            try:
                done = refresh_connection(connection, force=True)
            except InvalidGrant:
                reauth.append(portal_id)
            except PortalNotConnected:
                not_active.append(portal_id)
            except (HubSpotUnavailable, HubSpotOAuthError) as exc:
                self.message_user(request, _refresh_failure(portal_id, exc), messages.ERROR)
            else:
                if done:
                    refreshed.append(portal_id)
                    self.log_change(request, connection, gettext("Refreshed the tokens."))
                else:
                    skipped.append(portal_id)
        if refreshed:
            message = ngettext(
                "Refreshed the tokens of %(count)d portal: %(portals)s.",
                "Refreshed the tokens of %(count)d portals: %(portals)s.",
                len(refreshed),
            )
            self.message_user(request, _fill(message, refreshed), messages.SUCCESS)
        if skipped:
            message = ngettext(
                "%(count)d portal was being refreshed elsewhere at the same moment and was "
                "left to that: %(portals)s.",
                "%(count)d portals were being refreshed elsewhere at the same moment and were "
                "left to that: %(portals)s.",
                len(skipped),
            )
            self.message_user(request, _fill(message, skipped), messages.INFO)
        if reauth:
            message = ngettext(
                "HubSpot rejected the refresh token of %(count)d portal; it needs re-auth, "
                "reconnect it: %(portals)s.",
                "HubSpot rejected the refresh tokens of %(count)d portals; they need re-auth, "
                "reconnect them: %(portals)s.",
                len(reauth),
            )
            self.message_user(request, _fill(message, reauth), messages.WARNING)
        if not_active:
            message = ngettext(
                "Not refreshed: %(count)d portal is disconnected or needs re-auth; reconnect "
                "it first: %(portals)s.",
                "Not refreshed: %(count)d portals are disconnected or need re-auth; reconnect "
                "them first: %(portals)s.",
                len(not_active),
            )
            self.message_user(request, _fill(message, not_active), messages.WARNING)

    @admin.action(description=_("Disconnect"), permissions=["disconnect"])
    def disconnect(
        self, request: HttpRequest, queryset: QuerySet[HubSpotConnection]
    ) -> HttpResponse | None:
        connected = queryset.exclude(status=DISCONNECTED)
        if not connected.exists():
            self.message_user(
                request, gettext("The selected portals are already disconnected."), messages.INFO
            )
            return None
        if request.POST.get("post") != "yes":
            return self.disconnect_confirmation(request, queryset)
        disconnected: list[int] = []
        for portal_id, connection in self._full_rows(connected):
            if isinstance(connection, TokenDecryptionError):
                self.message_user(request, _decrypt_failure(portal_id), messages.ERROR)
                continue
            try:
                connection.disconnect(revoke=True)
            except HubSpotUnavailable:
                self.message_user(
                    request,
                    gettext(
                        "Portal %(portal)s was not disconnected: HubSpot could not be reached "
                        "to revoke its tokens. Nothing was changed; try again later."
                    )
                    % {"portal": portal_id},
                    messages.ERROR,
                )
                continue
            disconnected.append(portal_id)
            self.log_change(
                request, connection, gettext("Disconnected: revoked at HubSpot, tokens wiped.")
            )
        if disconnected:
            message = ngettext(
                "Disconnected %(count)d portal: %(portals)s.",
                "Disconnected %(count)d portals: %(portals)s.",
                len(disconnected),
            )
            self.message_user(request, _fill(message, disconnected), messages.SUCCESS)
        return None

    def disconnect_confirmation(
        self, request: HttpRequest, queryset: QuerySet[HubSpotConnection]
    ) -> TemplateResponse:
        rows = list(queryset.order_by("portal_id"))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Are you sure?"),
            "subtitle": None,
            "opts": self.opts,
            "connections": [row for row in rows if row.status != DISCONNECTED],
            "already_disconnected": [row for row in rows if row.status == DISCONNECTED],
            "queryset": rows,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.disconnect_confirmation_template, context)


def _decrypt_failure(portal_id: int) -> str:
    return gettext(
        "Portal %(portal)s: its stored tokens cannot be decrypted with FIELD_ENCRYPTION_KEY; "
        "nothing was changed."
    ) % {"portal": portal_id}


def _refresh_failure(portal_id: int, exc: HubSpotUnavailable | HubSpotOAuthError) -> str:
    if isinstance(exc, HubSpotUnavailable):
        return gettext(
            "Refreshing portal %(portal)s failed: HubSpot is unavailable (%(reason)s). "
            "The old tokens were kept; try again later."
        ) % {"portal": portal_id, "reason": exc.http_status or gettext("no answer")}
    return gettext(
        "Refreshing portal %(portal)s failed: HubSpot refused it (%(reason)s). "
        "The old tokens were kept."
    ) % {"portal": portal_id, "reason": exc.error[:64] or exc.http_status or "?"}
