"""The connection's detail page: its timeline, and buttons for what the list's actions do.

"Refresh now" and "Reconnect" are small POST forms; "Disconnect" opens the confirmation
page. Every query here is bounded: the page costs the same whatever the number of events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from ..models import ACTIVE, DISCONNECTED, HubSpotConnection, HubSpotConnectionEvent
from ..permissions import has_connect_permission
from .actions import ConnectionActions
from .display import ago, hubspot_portal_url, local_time, time_tag

#: How many events the detail page shows, newest first.
TIMELINE_LENGTH = 50


@dataclass
class Entry:
    """One event as the timeline shows it."""

    kind: str
    label: str
    when: SafeString
    message: str
    http_status: int | None
    correlation_id: str
    actor: str


@dataclass
class Timeline:
    entries: list[Entry]
    older: int


def timeline(connection: HubSpotConnection, limit: int = TIMELINE_LENGTH) -> Timeline:
    """The connection's last ``limit`` events and how many older ones there are.

    Two queries, three when an event names who did it (users are prefetched, never
    joined: they may live on another database).
    """
    rows = HubSpotConnectionEvent.objects.filter(connection_id=connection.pk)
    total = rows.count()
    shown = list(rows.order_by("-created_at", "-pk").prefetch_related("actor")[:limit])
    return Timeline([_entry(event) for event in shown], max(0, total - len(shown)))


def _entry(event: HubSpotConnectionEvent) -> Entry:
    local = local_time(event.created_at)
    return Entry(
        kind=event.kind,
        label=str(event.get_kind_display()),
        when=time_tag(event.created_at, f"{local:%Y-%m-%d %H:%M}"),
        message=event.message,
        http_status=event.http_status,
        correlation_id=event.correlation_id,
        actor=str(event.actor) if event.actor is not None else "",
    )


class DetailPage(ConnectionActions):
    """The detail page's timeline and buttons, for :class:`HubSpotConnectionAdmin`."""

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        name = f"{opts.app_label}_{opts.model_name}"
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/refresh/",
                wrap(require_POST(self.refresh_view)),
                name=f"{name}_refresh",
            ),
            path(
                "<path:object_id>/disconnect/",
                wrap(self.disconnect_view),
                name=f"{name}_disconnect",
            ),
            *super().get_urls(),
        ]

    def object_url(self, connection: HubSpotConnection, page: str = "change") -> str:
        opts = self.opts
        return reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_{page}",
            args=[quote(str(connection.pk))],
        )

    def _connection(self, request: HttpRequest, object_id: str) -> HubSpotConnection:
        connection = self.get_object(request, object_id)
        if connection is None:
            raise Http404(gettext("No such HubSpot connection."))
        return connection

    def refresh_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        if not self.has_change_permission(request):
            raise PermissionDenied
        connection = self._connection(request, object_id)
        self.refresh_rows(request, self.get_queryset(request).filter(pk=connection.pk))
        return HttpResponseRedirect(self.object_url(connection))

    def disconnect_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        if not self.has_disconnect_permission(request):
            raise PermissionDenied
        connection = self._connection(request, object_id)
        rows = self.get_queryset(request).filter(pk=connection.pk)
        if connection.status == DISCONNECTED:
            self.message_user(
                request, gettext("This portal is already disconnected."), messages.INFO
            )
            return HttpResponseRedirect(self.object_url(connection))
        if request.method == "POST" and request.POST.get("post") == "yes":
            self.disconnect_rows(request, rows, uninstall=request.POST.get("uninstall") == "yes")
            return HttpResponseRedirect(self.object_url(connection))
        return self.disconnect_confirmation(request, rows, connection=connection)

    def detail_context(
        self, request: HttpRequest, connection: HubSpotConnection
    ) -> dict[str, Any]:
        """The buttons and the timeline of the detail page."""
        may_connect = has_connect_permission(request)
        reconnect = connection.status != ACTIVE or bool(connection.missing_scopes)
        return {
            "hubspot_portal_url": hubspot_portal_url(connection),
            "hubspot_refresh_url": (
                self.object_url(connection, "refresh")
                if connection.status == ACTIVE and self.has_change_permission(request)
                else ""
            ),
            "hubspot_disconnect_url": (
                self.object_url(connection, "disconnect")
                if connection.status != DISCONNECTED and self.has_disconnect_permission(request)
                else ""
            ),
            "hubspot_reconnect_url": (
                reverse("hubspot_connect:connect") if reconnect and may_connect else ""
            ),
            "hubspot_next": request.get_full_path(),
            "hubspot_timeline": timeline(connection),
            "hubspot_last_refresh": ago(connection.last_refreshed_at),
        }

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context: dict[str, Any] = {}
        connection = self.get_object(request, object_id)
        if connection is not None:
            context.update(self.detail_context(request, connection))
        context.update(extra_context or {})
        return super().change_view(request, object_id, form_url, extra_context=context)


def failures_text(connection: HubSpotConnection) -> str:
    """``"3 (since 2 hours ago)"`` for a failing connection, else the count."""
    if not connection.refresh_failures or connection.failing_since is None:
        return str(connection.refresh_failures)
    since = format_html(gettext("since {time}"), time=ago(connection.failing_since))
    return format_html(
        '{}<br><span class="hubspot-quiet">{}</span>', connection.refresh_failures, since
    )
