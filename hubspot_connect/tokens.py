"""The documented import path of the token API.

``get_access_token`` and ``aget_access_token`` live in :mod:`hubspot_connect.access`,
``api_session`` in :mod:`hubspot_connect.session`; both are importable from here::

    from hubspot_connect.tokens import aget_access_token, api_session, get_access_token
"""

from .access import PortalRef, aget_access_token, get_access_token
from .session import HubSpotSession, api_session

__all__ = ["HubSpotSession", "PortalRef", "aget_access_token", "api_session", "get_access_token"]
