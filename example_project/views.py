"""The example site: a home page listing connected portals, and a "Call HubSpot" button.

Each user sees and calls only the portals they may (:func:`portals_for`): copy that.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from hubspot_connect.conf import app_settings
from hubspot_connect.exceptions import (
    HubSpotConnectError,
    HubSpotUnavailable,
    PortalNotConnected,
    TokenDecryptionError,
)
from hubspot_connect.models import HubSpotConnection
from hubspot_connect.tokens import api_session

logger = logging.getLogger("example_project")

#: What the "Call HubSpot" button can ask for: choice -> (label, path).
CALLS = {
    "account": (_("Account details"), "/account-info/2026-03/details"),
    "contacts": (_("First 5 contacts"), "/crm/objects/2026-03/contacts?limit=5"),
}

#: Who may see and use every connected portal, not only the ones they connected.
VIEW_ALL_PORTALS = "hubspot_connect.view_hubspotconnection"


def portals_for(user: Any) -> QuerySet[HubSpotConnection]:
    """The connections ``user`` (``request.user``) may see and call HubSpot as.

    Everyone's with the "view HubSpot connection" permission, else those they connected.
    Filtered on ``connected_by_id``, never by joining the user table: a site may keep
    users on another database than the connections.
    """
    connections = HubSpotConnection.objects.all()
    if not user.is_authenticated:
        return connections.none()
    if user.has_perm(VIEW_ALL_PORTALS):
        return connections
    return connections.filter(connected_by_id=user.pk)


def demo_context(request: HttpRequest) -> dict[str, Any]:
    """Template context for every page: which HubSpot this site talks to."""
    return {
        "hubspot_fake": bool(getattr(settings, "HUBSPOT_FAKE", False)),
        "hubspot_api": app_settings.API_BASE_URL,
    }


def home(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {"calls": CALLS}
    if request.user.is_authenticated:
        context["connections"] = portals_for(request.user).defer("access_token", "refresh_token")
    return render(request, "home.html", context)


@login_required
@require_POST
def call_hubspot(request: HttpRequest, portal_id: int) -> HttpResponse:
    """Call one HubSpot API as ``portal_id`` and show the answer, or a friendly error."""
    if not portals_for(request.user).filter(portal_id=portal_id).exists():
        # Someone else's portal looks exactly like one that does not exist.
        raise Http404(_("No such portal."))
    choice = request.POST.get("call", "account")
    label, path = CALLS.get(choice, CALLS["account"])
    context: dict[str, Any] = {"portal_id": portal_id, "label": label, "path": path}
    started = time.monotonic()
    try:
        response = api_session(portal_id).get(path)
    except PortalNotConnected as exc:  # unknown, disconnected or needs re-auth
        logger.info("Call HubSpot for portal %s: %s", portal_id, type(exc).__name__)
        context["error"] = _("This portal is not connected (any more). Connect it again.")
        context["reconnect"] = True
        return render(request, "call_result.html", context, status=409)
    except TokenDecryptionError:
        logger.error("Call HubSpot for portal %s: token does not decrypt", portal_id)
        context["error"] = _(
            "The stored token cannot be decrypted: FIELD_ENCRYPTION_KEY changed. "
            "Connect the portal again."
        )
        context["reconnect"] = True
        return render(request, "call_result.html", context, status=409)
    except (HubSpotUnavailable, requests.RequestException) as exc:
        logger.warning("Call HubSpot for portal %s failed: %s", portal_id, type(exc).__name__)
        context["error"] = _("HubSpot could not be reached just now. Try again in a minute.")
        return render(request, "call_result.html", context, status=502)
    except HubSpotConnectError as exc:
        logger.warning("Call HubSpot for portal %s failed: %s", portal_id, type(exc).__name__)
        context["error"] = _("HubSpot refused to renew this portal's access. Connect it again.")
        context["reconnect"] = True
        return render(request, "call_result.html", context, status=409)
    context["elapsed_ms"] = round((time.monotonic() - started) * 1000)
    context["status"] = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 or not isinstance(body, dict):
        message = body.get("message") if isinstance(body, dict) else None
        context["error"] = _("HubSpot answered HTTP %(status)s.") % {
            "status": response.status_code
        }
        context["detail"] = str(message or "")[:300]
        return render(request, "call_result.html", context, status=502)
    context["body"] = json.dumps(body, indent=2, sort_keys=True)
    context["contacts"] = [
        item.get("properties", {}) for item in body.get("results", []) if isinstance(item, dict)
    ]
    context["account"] = body if "portalId" in body else None
    return render(request, "call_result.html", context)
