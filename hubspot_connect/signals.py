"""Signals sent by hubspot_connect. The sender is always ``HubSpotConnection``."""

from django.dispatch import Signal

#: A portal was connected or reconnected. Arguments: ``connection``, ``request``, ``created``.
hubspot_connected = Signal()

#: New tokens were stored after a refresh. Arguments: ``connection``.
hubspot_tokens_refreshed = Signal()

#: HubSpot rejected the refresh token. Arguments: ``connection``, ``error``.
hubspot_needs_reauth = Signal()

#: The portal was disconnected and its tokens wiped. Arguments: ``connection``.
hubspot_disconnected = Signal()
