"""The connection admin's actions: refresh tokens now, disconnect (with confirmation).

The detail page's "Refresh now" and "Disconnect" buttons run the same code on one row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import events
from ..db import Durable, write_alias
from ..exceptions import (
    HubSpotConnectError,
    HubSpotOAuthError,
    HubSpotUnavailable,
    InvalidClient,
    InvalidGrant,
    PortalNotConnected,
    TokenDecryptionError,
)
from ..models import DISCONNECTED, EventKind, HubSpotConnection
from ..refresh import refresh_connection

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[HubSpotConnection]
else:
    _ModelAdmin = admin.ModelAdmin

_MAX_LISTED = 20  # portal ids named in one message before "and N more"


class ConnectionActions(_ModelAdmin):
    """Refresh and disconnect, for :class:`HubSpotConnectionAdmin`."""

    actions = ("refresh_tokens", "disconnect")
    disconnect_confirmation_template = (
        "admin/hubspot_connect/hubspotconnection/disconnect_selected_confirmation.html"
    )

    def has_disconnect_permission(self, request: HttpRequest) -> bool:
        """Disconnecting ends the site's access like deleting would: it needs ``delete``."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")

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
        self.refresh_rows(request, queryset)

    def refresh_rows(self, request: HttpRequest, queryset: QuerySet[HubSpotConnection]) -> None:
        """Refresh each row now and say what happened, one message per outcome."""
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
            except InvalidClient as exc:
                # The app's own credentials: every other portal would get the same answer.
                alias = write_alias()
                with Durable(alias).block():
                    events.record_error(
                        EventKind.CREDENTIALS_REJECTED, None, exc, actor=request.user, using=alias
                    )
                self.message_user(request, _credentials_rejected(), messages.ERROR)
                break
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
            self.message_user(request, fill(message, refreshed), messages.SUCCESS)
        if skipped:
            message = ngettext(
                "%(count)d portal was being refreshed elsewhere at the same moment and was "
                "left to that: %(portals)s.",
                "%(count)d portals were being refreshed elsewhere at the same moment and were "
                "left to that: %(portals)s.",
                len(skipped),
            )
            self.message_user(request, fill(message, skipped), messages.INFO)
        if reauth:
            message = ngettext(
                "HubSpot rejected the refresh token of %(count)d portal; it needs re-auth, "
                "reconnect it: %(portals)s.",
                "HubSpot rejected the refresh tokens of %(count)d portals; they need re-auth, "
                "reconnect them: %(portals)s.",
                len(reauth),
            )
            self.message_user(request, fill(message, reauth), messages.WARNING)
        if not_active:
            message = ngettext(
                "Not refreshed: %(count)d portal is disconnected or needs re-auth; reconnect "
                "it first: %(portals)s.",
                "Not refreshed: %(count)d portals are disconnected or need re-auth; reconnect "
                "them first: %(portals)s.",
                len(not_active),
            )
            self.message_user(request, fill(message, not_active), messages.WARNING)

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
        self.disconnect_rows(request, connected, uninstall=request.POST.get("uninstall") == "yes")
        return None

    def disconnect_rows(
        self, request: HttpRequest, queryset: QuerySet[HubSpotConnection], *, uninstall: bool
    ) -> list[int]:
        """Disconnect each row (and uninstall the app, if asked); the portals disconnected."""
        disconnected: list[int] = []
        for portal_id, connection in self._full_rows(queryset):
            if isinstance(connection, TokenDecryptionError):
                self.message_user(request, _decrypt_failure(portal_id), messages.ERROR)
                continue
            try:
                connection.disconnect(revoke=True, uninstall=uninstall, actor=request.user)
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
            except HubSpotConnectError as exc:
                self.message_user(
                    request,
                    gettext(
                        "Portal %(portal)s was not disconnected: HubSpot refused (%(reason)s). "
                        "Nothing was changed."
                    )
                    % {"portal": portal_id, "reason": _reason(exc)},
                    messages.ERROR,
                )
                continue
            disconnected.append(portal_id)
            change = (
                gettext("Disconnected: app uninstalled, revoked at HubSpot, tokens wiped.")
                if uninstall
                else gettext("Disconnected: revoked at HubSpot, tokens wiped.")
            )
            self.log_change(request, connection, change)
        if disconnected:
            message = ngettext(
                "Disconnected %(count)d portal: %(portals)s.",
                "Disconnected %(count)d portals: %(portals)s.",
                len(disconnected),
            )
            self.message_user(request, fill(message, disconnected), messages.SUCCESS)
        return disconnected

    def disconnect_confirmation(
        self,
        request: HttpRequest,
        queryset: QuerySet[HubSpotConnection],
        *,
        connection: HubSpotConnection | None = None,
    ) -> TemplateResponse:
        """The confirmation page; ``connection``: asked from its detail page, not the list."""
        rows = list(queryset.order_by("portal_id"))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Are you sure?"),
            "subtitle": None,
            "opts": self.opts,
            "connections": [row for row in rows if row.status != DISCONNECTED],
            "already_disconnected": [row for row in rows if row.status == DISCONNECTED],
            "queryset": rows,
            "original": connection,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.disconnect_confirmation_template, context)


def fill(message: str, portal_ids: Sequence[int]) -> str:
    return message % {"count": len(portal_ids), "portals": _portal_list(portal_ids)}


def _portal_list(portal_ids: Sequence[int]) -> str:
    shown = ", ".join(str(portal_id) for portal_id in portal_ids[:_MAX_LISTED])
    more = len(portal_ids) - _MAX_LISTED
    if more > 0:
        shown += " " + ngettext("and %(count)d more", "and %(count)d more", more) % {"count": more}
    return shown


def _credentials_rejected() -> str:
    return gettext(
        "HubSpot refused the app's own credentials (invalid_client): check "
        "HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET against the app's Auth settings in "
        "HubSpot. No portal was changed."
    )


def _reason(exc: HubSpotConnectError) -> str:
    if isinstance(exc, HubSpotOAuthError):
        return str(exc.error[:64] or exc.http_status or "?")
    return type(exc).__name__


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
