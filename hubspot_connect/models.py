"""HubSpotConnection: one connected portal, its tokens (encrypted at rest) and its QuerySet.

This module knows nothing of HTTP and imports no service: the services import it. The
model's actions (:meth:`HubSpotConnection.refresh`, :meth:`HubSpotConnection.disconnect`)
call the service functions that ``HubSpotConnectConfig.ready()`` plugs into
:data:`services`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .conf import app_settings
from .exceptions import NeedsReauth, PortalDisconnected
from .fields import EncryptedTokenField

# Plain strings for comparisons (django-stubs types TextChoices members as tuples).
ACTIVE, NEEDS_REAUTH, DISCONNECTED = "active", "needs_reauth", "disconnected"


class Status(models.TextChoices):
    ACTIVE = ACTIVE, _("active")
    NEEDS_REAUTH = NEEDS_REAUTH, _("needs re-auth")
    DISCONNECTED = DISCONNECTED, _("disconnected")


class HubSpotConnectionQuerySet(models.QuerySet["HubSpotConnection"]):
    def active(self) -> HubSpotConnectionQuerySet:
        return self.filter(status=ACTIVE)

    def needs_reauth(self) -> HubSpotConnectionQuerySet:
        return self.filter(status=NEEDS_REAUTH)

    def expiring(self, within: timedelta = timedelta(0)) -> HubSpotConnectionQuerySet:
        """Connections whose access token expires within ``within`` from now (or has)."""
        return self.filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__lte=timezone.now() + within)
        )

    def failing(self) -> HubSpotConnectionQuerySet:
        """Active connections whose last refresh attempt failed (they are being retried)."""
        return self.filter(status=ACTIVE, refresh_failures__gt=0)

    def missing_scopes(self, required: Iterable[str] | None = None) -> HubSpotConnectionQuerySet:
        """Connections never granted one of the ``required`` scopes (default HUBSPOT_SCOPES).

        Disconnected ones included; combine with :meth:`active` as needed.
        """
        missing = missing_scopes_q(app_settings.SCOPES if required is None else required)
        if missing is None:
            return self.none()
        return self.alias(**{GRANTED_TEXT: Cast("scopes", models.TextField())}).filter(missing)

    def needs_attention(self, now: datetime | None = None) -> HubSpotConnectionQuerySet:
        """Connections someone should look at: see :meth:`HubSpotConnection.problems`."""
        now = now or timezone.now()
        active = models.Q(status=ACTIVE)
        expired = models.Q(expires_at__isnull=True) | models.Q(expires_at__lte=now)
        condition = (
            models.Q(status=NEEDS_REAUTH)
            | (active & models.Q(refresh_failures__gt=0))
            | (active & expired)
        )
        missing = missing_scopes_q(app_settings.SCOPES)
        if missing is not None:
            condition |= ~models.Q(status=DISCONNECTED) & missing
        return self.alias(**{GRANTED_TEXT: Cast("scopes", models.TextField())}).filter(condition)


#: The alias :func:`missing_scopes_q` needs: the granted scopes as the JSON list's text.
GRANTED_TEXT = "_hubspot_granted_scopes"


def missing_scopes_q(required: Iterable[str]) -> models.Q | None:
    """A condition true for rows not granted one of ``required`` (``None``: nothing required).

    It compares the JSON list as text (``"scope"``, quotes included, is an exact element),
    because JSON containment lookups do not exist on every database (SQLite, MariaDB).
    The queryset needs the :data:`GRANTED_TEXT` alias (see
    :meth:`HubSpotConnectionQuerySet.missing_scopes`).
    """
    condition: models.Q | None = None
    for scope in sorted(set(required)):
        part = ~models.Q(**{f"{GRANTED_TEXT}__contains": json.dumps(scope)})
        condition = part if condition is None else condition | part
    return condition


HubSpotConnectionManager = models.Manager.from_queryset(HubSpotConnectionQuerySet)


class Services:
    """The functions behind the model's actions, set by ``HubSpotConnectConfig.ready()``."""

    refresh: Callable[..., bool]
    disconnect: Callable[..., None]


services = Services()


class HubSpotConnection(models.Model):
    """One connected HubSpot portal and its OAuth tokens (encrypted at rest)."""

    Status = Status

    portal_id = models.BigIntegerField(_("portal id"), unique=True)
    hub_domain = models.CharField(_("hub domain"), max_length=255, blank=True)
    hublet = models.CharField(_("hublet"), max_length=32, blank=True)
    scopes = models.JSONField(_("scopes"), default=list, blank=True)
    hubspot_user_id = models.BigIntegerField(_("HubSpot user id"), null=True, blank=True)
    hubspot_user_email = models.CharField(_("HubSpot user"), max_length=254, blank=True)
    # What GET /account-info/2026-03/details says about the account, when it connected.
    ui_domain = models.CharField(_("HubSpot UI domain"), max_length=255, blank=True)
    data_hosting_location = models.CharField(_("data hosting location"), max_length=32, blank=True)
    account_type = models.CharField(_("account type"), max_length=64, blank=True)
    time_zone = models.CharField(_("account time zone"), max_length=64, blank=True)
    connected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="hubspot_connections",
        verbose_name=_("connected by"),
        # No database constraint: the user model may live on another database (a router
        # can put this app on its own alias). Django still applies SET_NULL.
        db_constraint=False,
    )
    access_token = EncryptedTokenField(_("access token"), blank=True, default="", editable=False)
    refresh_token = EncryptedTokenField(_("refresh token"), blank=True, default="", editable=False)
    token_type = models.CharField(_("token type"), max_length=32, default="bearer")
    expires_at = models.DateTimeField(_("access token expires"), null=True, db_index=True)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=ACTIVE, db_index=True
    )
    last_refreshed_at = models.DateTimeField(_("last refreshed"), null=True, blank=True)
    refresh_failures = models.PositiveIntegerField(_("refresh failures"), default=0)
    refresh_count = models.PositiveBigIntegerField(_("successful refreshes"), default=0)
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    lease_expires_at = models.DateTimeField(_("refresh lease until"), null=True, blank=True)
    created_at = models.DateTimeField(_("connected on"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = HubSpotConnectionManager()

    class Meta:
        verbose_name = _("HubSpot connection")
        verbose_name_plural = _("HubSpot connections")
        ordering = ("portal_id",)

    def __str__(self) -> str:
        if self.hub_domain:
            return f"HubSpot portal {self.portal_id} ({self.hub_domain})"
        return f"HubSpot portal {self.portal_id}"

    def __repr__(self) -> str:
        return f"<HubSpotConnection portal_id={self.portal_id} status={self.status}>"

    @property
    def is_active(self) -> bool:
        return self.status == ACTIVE

    @property
    def missing_scopes(self) -> set[str]:
        """The scopes of HUBSPOT_SCOPES this portal was never granted (reconnect to grant them)."""
        return set(app_settings.SCOPES) - {str(scope) for scope in self.scopes or ()}

    def problems(self, now: datetime | None = None) -> list[str]:
        """Why this connection needs attention (``[]``: it does not).

        ``needs_reauth``; ``failing`` (refreshes fail, being retried); ``expired`` (the
        access token has, and no refresh replaced it); ``missing_scopes``. A disconnected
        connection has none: it was ended on purpose.
        """
        if self.status == DISCONNECTED:
            return []
        found = [NEEDS_REAUTH] if self.status == NEEDS_REAUTH else []
        if self.status == ACTIVE and self.refresh_failures:
            found.append("failing")
        if self.status == ACTIVE and self.is_expired(now):
            found.append("expired")
        if self.missing_scopes:
            found.append("missing_scopes")
        return found

    def expires_in(self, now: datetime | None = None) -> timedelta | None:
        """Time left on the access token (negative once expired)."""
        if self.expires_at is None:
            return None
        return self.expires_at - (now or timezone.now())

    def is_expired(self, now: datetime | None = None) -> bool:
        left = self.expires_in(now)
        return left is None or left <= timedelta(0)

    def expires_within(self, within: timedelta, now: datetime | None = None) -> bool:
        """Whether the access token expires within ``within`` (or has, or is unknown)."""
        left = self.expires_in(now)
        return left is None or left <= within

    def ensure_usable(self) -> None:
        """Raise :class:`NeedsReauth` or :class:`PortalDisconnected` unless active."""
        if self.status == NEEDS_REAUTH:
            raise NeedsReauth(
                f"Portal {self.portal_id} needs to be reconnected: HubSpot rejected its "
                "refresh token.",
                portal_id=self.portal_id,
            )
        if self.status == DISCONNECTED:
            raise PortalDisconnected(
                f"Portal {self.portal_id} was disconnected.", portal_id=self.portal_id
            )

    def refresh(self, force: bool = False) -> bool:
        """Refresh the tokens under the lease; ``False`` if no refresh was due or possible.

        See :func:`hubspot_connect.refresh.refresh_connection`.
        """
        return services.refresh(self, force=force)

    def disconnect(
        self, revoke: bool = True, uninstall: bool = False, *, actor: Any = None
    ) -> None:
        """Revoke the refresh token at HubSpot (optionally), wipe both tokens, keep the row.

        ``uninstall=True`` first removes the app from the customer's HubSpot account;
        ``actor`` is the user who disconnected it, for the history. See
        :func:`hubspot_connect.connect.disconnect_connection`.
        """
        services.disconnect(self, revoke=revoke, uninstall=uninstall, actor=actor)


class EventKind(models.TextChoices):
    CONNECTED = "connected", _("connected")
    RECONNECTED = "reconnected", _("reconnected")
    REFRESH_FAILED = "refresh_failed", _("refresh failed")
    NEEDS_REAUTH = "needs_reauth", _("needs re-auth")
    RECOVERED = "recovered", _("recovered")
    DISCONNECTED = "disconnected", _("disconnected")
    UNINSTALLED = "uninstalled", _("uninstalled")
    SCOPES_CHANGED = "scopes_changed", _("scopes changed")
    KEY_ROTATED = "key_rotated", _("key rotated")
    CREDENTIALS_REJECTED = "credentials_rejected", _("app credentials rejected")


class HubSpotConnectionEvent(models.Model):
    """One thing that happened to a connection (append only; never holds a secret).

    ``connection`` is empty for events of the whole app, such as HubSpot refusing the
    app's own credentials. Successful refreshes are not events: they are counted on the
    connection (``refresh_count``) and per hour (:class:`HubSpotRefreshHour`).
    """

    Kind = EventKind

    connection = models.ForeignKey(
        HubSpotConnection,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="events",
        verbose_name=_("connection"),
    )
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    kind = models.CharField(_("what"), max_length=32, choices=EventKind.choices)
    message = models.CharField(_("message"), max_length=500, blank=True)
    http_status = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    correlation_id = models.CharField(_("HubSpot correlation id"), max_length=64, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
        db_constraint=False,  # see HubSpotConnection.connected_by
    )

    class Meta:
        verbose_name = _("HubSpot connection event")
        verbose_name_plural = _("HubSpot connection events")
        ordering = ("-created_at", "-pk")
        indexes = [
            models.Index(fields=["connection", "-created_at"], name="hubspot_event_timeline")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.created_at:%Y-%m-%d %H:%M})"


class HubSpotRefreshHour(models.Model):
    """How many refreshes succeeded and failed in one hour, over every connection."""

    hour = models.DateTimeField(_("hour"), unique=True)
    refreshed = models.PositiveIntegerField(_("refreshed"), default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0)
    needs_reauth = models.PositiveIntegerField(_("needs re-auth"), default=0)

    class Meta:
        verbose_name = _("refreshes in one hour")
        verbose_name_plural = _("refreshes per hour")
        ordering = ("-hour",)

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00}: {self.refreshed} refreshed, {self.failed} failed"
