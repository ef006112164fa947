"""Django admin for HubSpot connections (registered on the default admin site)."""

from .actions import ConnectionActions
from .connection import HubSpotConnectionAdmin, matching_users
from .display import EXPIRING, EXPIRING_SOON, STATUS_LABELS, display_status, hubspot_portal_url

__all__ = [
    "EXPIRING",
    "EXPIRING_SOON",
    "STATUS_LABELS",
    "ConnectionActions",
    "HubSpotConnectionAdmin",
    "display_status",
    "hubspot_portal_url",
    "matching_users",
]
