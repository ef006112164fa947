from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

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


HubSpotConnectionManager = models.Manager.from_queryset(HubSpotConnectionQuerySet)


class HubSpotConnection(models.Model):
    """One connected HubSpot portal and its OAuth tokens (encrypted at rest)."""

    Status = Status

    portal_id = models.BigIntegerField(_("portal id"), unique=True)
    hub_domain = models.CharField(_("hub domain"), max_length=255, blank=True)
    hublet = models.CharField(_("hublet"), max_length=32, blank=True)
    scopes = models.JSONField(_("scopes"), default=list, blank=True)
    hubspot_user_id = models.BigIntegerField(_("HubSpot user id"), null=True, blank=True)
    hubspot_user_email = models.CharField(_("HubSpot user"), max_length=254, blank=True)
    connected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="hubspot_connections",
        verbose_name=_("connected by"),
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

    def expires_in(self, now: datetime | None = None) -> timedelta | None:
        """Time left on the access token (negative once expired)."""
        if self.expires_at is None:
            return None
        return self.expires_at - (now or timezone.now())

    def is_expired(self, now: datetime | None = None) -> bool:
        left = self.expires_in(now)
        return left is None or left <= timedelta(0)

    def refresh(self, force: bool = False) -> bool:
        """Refresh the tokens under the lease; ``False`` if no refresh was due or possible."""
        from .tokens import refresh_connection

        return refresh_connection(self, force=force)

    def disconnect(self, revoke: bool = True) -> None:
        """Revoke the refresh token at HubSpot (optionally), wipe both tokens, keep the row."""
        from .tokens import disconnect_connection

        disconnect_connection(self, revoke=revoke)
