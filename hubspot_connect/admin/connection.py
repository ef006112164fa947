"""The connection admin: read-only, never shows a token; what staff see of each portal.

Connections are created only by the OAuth flow, so there is no add form; the change
form is a read-only detail page with the connection's history; rows are never deleted
(disconnecting keeps the record). The querysets defer both token fields, so listing or
viewing connections decrypts nothing, and no URL may filter on a token column.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.inspect import func_supports_parameter
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..models import ACTIVE, DISCONNECTED, HubSpotConnection
from ..permissions import has_connect_permission
from .detail import DetailPage, failures_text
from .display import (
    STATUS_LABELS,
    TOKEN_FIELDS,
    ago,
    display_status,
    hubspot_portal_url,
    local_time,
    time_tag,
)
from .filters import ExpiresFilter, RefreshFilter, ScopesFilter, StatusFilter
from .summary import health_summary

#: At most this many users match one search of "who connected it".
MAX_MATCHING_USERS = 500


def matching_users(term: str) -> list[Any] | None:
    """Primary keys of users whose login or email contains ``term``; ``None`` for no term.

    Asked of the user model's own manager (its own database), by the fields the user model
    names: ``USERNAME_FIELD`` and ``EMAIL_FIELD`` (when it has such a field).
    """
    if not term:
        return None
    user_model = get_user_model()
    names = {user_model.USERNAME_FIELD, user_model.get_email_field_name()}
    concrete = {field.name for field in user_model._meta.concrete_fields}
    query = Q()
    for name in sorted(names & concrete):
        query |= Q(**{f"{name}__icontains": term})
    if not query:
        return None
    users = user_model._default_manager.filter(query).values_list("pk", flat=True)
    return list(users[:MAX_MATCHING_USERS])


@admin.register(HubSpotConnection)
class HubSpotConnectionAdmin(DetailPage):
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
    list_filter = (StatusFilter, RefreshFilter, ScopesFilter, ExpiresFilter)
    # Who connected a portal is searched in the user model's own database, by its
    # USERNAME_FIELD and EMAIL_FIELD (see get_search_results): it may have neither a
    # ``username`` nor an ``email`` field, and may live on another database than ours.
    search_fields = ("portal_id", "hub_domain", "hubspot_user_email")
    search_help_text = _(
        "Portal id, hub domain, HubSpot user email, or the login or email of who connected it."
    )
    exclude = TOKEN_FIELDS
    fieldsets = (
        (
            _("Portal"),
            {
                "fields": (
                    "portal",
                    "hub_domain",
                    "status_badge",
                    "hubspot_user_email",
                    "hubspot_user_id",
                    "connected_by",
                    "created_at",
                )
            },
        ),
        (_("Access"), {"fields": ("scope_list", "missing_scope_list", "token_type", "expires")}),
        (
            _("Refresh"),
            {
                "fields": (
                    "last_refresh",
                    "refresh_count",
                    "refresh_failures",
                    "failing_for",
                    "last_error",
                    "last_error_at",
                    "lease_expires_at",
                    "updated_at",
                )
            },
        ),
        (
            _("Account"),
            {
                "classes": ("collapse",),
                "fields": (
                    "ui_domain",
                    "hublet",
                    "data_hosting_location",
                    "account_type",
                    "time_zone",
                ),
            },
        ),
    )
    # Every field shown is read only: the detail page is Django's read-only view.
    readonly_fields = tuple(
        cast(str, name) for _, options in fieldsets for name in options["fields"]
    )

    # -- queryset and permissions ----------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[HubSpotConnection]:
        # Nothing the admin shows needs a token: never decrypt one to render a page.
        # Users are prefetched, not joined: they may live on another database.
        queryset = super().get_queryset(request).defer(*TOKEN_FIELDS)
        return queryset.prefetch_related("connected_by")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # ?refresh_token__regex=... would let view-only staff read the stored ciphertext
        # one character at a time: no lookup on a token column, of any kind.
        if lookup.split(LOOKUP_SEP, 1)[0] in TOKEN_FIELDS:
            return False
        parent = super().lookup_allowed
        if func_supports_parameter(parent, "request"):  # Django 5.0+
            return parent(lookup, value, request)
        return parent(lookup, value)  # Django 4.2

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[HubSpotConnection], search_term: str
    ) -> tuple[QuerySet[HubSpotConnection], bool]:
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        users = matching_users(search_term.strip())
        if users is not None:
            found = found | queryset.filter(connected_by_id__in=users)
        return found, may_have_duplicates

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
        badge = format_html(
            '<span class="hubspot-badge hubspot-badge-{}">{}</span>',
            status,
            STATUS_LABELS.get(status, status),
        )
        missing = sorted(obj.missing_scopes) if obj.status != DISCONNECTED else []
        if not missing:
            return badge
        return format_html(
            '{} <span class="hubspot-badge hubspot-badge-scopes" title="{}">{}</span>',
            badge,
            gettext("Never granted: %(scopes)s. Reconnect to grant them.")
            % {"scopes": ", ".join(missing)},
            gettext("missing scopes"),
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
        return time_tag(obj.expires_at, text)

    @admin.display(description=_("last refresh"), ordering="last_refreshed_at")
    def last_refresh(self, obj: HubSpotConnection) -> str:
        return ago(obj.last_refreshed_at)

    @admin.display(description=_("granted scopes"))
    def scope_list(self, obj: HubSpotConnection) -> str:
        scopes = [str(scope) for scope in obj.scopes or []]
        if not scopes:
            return "-"
        items = format_html_join("", "<li><code>{}</code></li>", ((scope,) for scope in scopes))
        return format_html('<ul class="hubspot-scopes">{}</ul>', items)

    @admin.display(description=_("missing scopes"))
    def missing_scope_list(self, obj: HubSpotConnection) -> str:
        """Required by HUBSPOT_SCOPES, never granted: reconnecting asks for them."""
        missing = sorted(obj.missing_scopes)
        if not missing:
            return "-"
        items = format_html_join("", "<li><code>{}</code></li>", ((scope,) for scope in missing))
        return format_html('<ul class="hubspot-scopes hubspot-scopes-missing">{}</ul>', items)

    @admin.display(description=_("failing since"), ordering="failing_since")
    def failing_for(self, obj: HubSpotConnection) -> str:
        return ago(obj.failing_since)

    @admin.display(description=_("status"), ordering="status")
    def status_and_reconnect(self, obj: HubSpotConnection) -> str:
        badge = self.status_badge(obj)
        if obj.status == ACTIVE and not obj.missing_scopes:
            return badge
        # Submits the "Connect a HubSpot portal" form above the list (forms do not nest,
        # and the rows are inside the actions form), with this portal preselected.
        return format_html(
            '{} <button type="submit" form="hubspot-connect-form" name="portal" value="{}" '
            'class="hubspot-reconnect" title="{}">{}</button>',
            badge,
            obj.portal_id,
            gettext("Open HubSpot's consent screen for portal %(portal)s")
            % {"portal": obj.portal_id},
            gettext("Reconnect"),
        )

    @admin.display(description=_("failures"), ordering="refresh_failures")
    def failures(self, obj: HubSpotConnection) -> str:
        return failures_text(obj)

    @admin.display(description=_("connected"), ordering="created_at")
    def connected(self, obj: HubSpotConnection) -> str:
        """When and by whom, in one column: the list stays readable on a laptop screen."""
        when = time_tag(obj.created_at, date_format(local_time(obj.created_at), "DATE_FORMAT"))
        if obj.connected_by is None:
            return when
        by = gettext("by %(user)s") % {"user": obj.connected_by}
        return format_html('{}<br><span class="hubspot-quiet">{}</span>', when, by)

    # -- the list page ----------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        opts = self.opts
        changelist = reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist"
        )
        context = {
            "hubspot_connect_url": (
                reverse("hubspot_connect:connect") if has_connect_permission(request) else ""
            ),
            "hubspot_next": changelist,
            # A callable: computed (two queries) only if the list page is rendered.
            "hubspot_summary": health_summary,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)
