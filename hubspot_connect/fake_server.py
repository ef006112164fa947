"""FakeHubSpot over real HTTP: Django views for the example project and browser tests.

Mount it in development only, next to the app's own URLs::

    path("fake-hubspot/", include("hubspot_connect.fake_server")),

and point the app at it::

    HUBSPOT_AUTHORIZE_URL = "http://127.0.0.1:8000/fake-hubspot/oauth/authorize"
    HUBSPOT_API_BASE_URL = "http://127.0.0.1:8000/fake-hubspot/api"

``oauth/authorize`` is the consent screen (a page with Approve and Decline), and
``oauth/<portal_id>/authorize`` the same with that portal preselected; everything
under ``api/`` (token, introspect, revoke and the two API endpoints) is answered by
:meth:`FakeHubSpot.handle`, the same code the ``fake_hubspot`` pytest fixture uses.
State lives in ``HUBSPOT_FAKE_STORE`` (a JSON file path), so it survives runserver's
reloads and is shared by every process; without it, in this process's memory.

Its views are ``csrf_exempt`` and answer as HubSpot to anyone: system check
``hubspot_connect.E016`` fails when they are mounted with ``DEBUG = False``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path
from django.utils.functional import Promise
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt

from .compat import login_not_required
from .conf import app_settings
from .testing import (
    FakeConnectionReset,
    FakeHubSpot,
    FakeTimeout,
    FileStore,
    MemoryStore,
)

app_name = "hubspot_fake"

_memory = MemoryStore()


def get_fake() -> FakeHubSpot:
    """A FakeHubSpot for the current settings, on the configured store.

    Built per request (it is cheap) so ``override_settings`` works and the fake's
    in-process request log does not grow forever.
    """
    # Read here rather than in conf.py: it configures this development helper only.
    store_path = app_settings.FAKE_STORE
    store: MemoryStore | FileStore = FileStore(store_path) if store_path else _memory
    return FakeHubSpot(store=store)


def _consent_problem(
    request: HttpRequest, query: dict[str, str], fake: FakeHubSpot
) -> Promise | None:
    """What HubSpot's consent screen would refuse about this authorize URL, if anything."""
    if not query.get("client_id"):
        return _("The authorize URL has no client_id.")
    if query["client_id"] != fake.client_id:
        return _("The client_id is not one of this fake's apps. Check HUBSPOT_CLIENT_ID.")
    redirect_uri = query.get("redirect_uri", "")
    if urlsplit(redirect_uri).scheme not in ("http", "https") or not urlsplit(redirect_uri).netloc:
        return _("The redirect_uri is missing or not an absolute http(s) URL.")
    registered = app_settings.REDIRECT_URI
    if registered is not None:
        # HubSpot accepts only the redirect URL registered for the app, exactly.
        if redirect_uri != registered:
            return _("The redirect_uri does not match the app's redirect URL.")
    elif not url_has_allowed_host_and_scheme(redirect_uri, allowed_hosts={request.get_host()}):
        # With nothing registered, stay on this site: never an open redirect.
        return _("The redirect_uri points to another site.")
    if "oauth" not in query.get("scope", "").split():
        return _("The scope parameter does not include the required 'oauth' scope.")
    if not query.get("state"):
        return _("The authorize URL has no state parameter.")
    return None


def _error_page(request: HttpRequest, message: Promise) -> HttpResponse:
    context = {"message": message}
    return render(request, "hubspot_connect/fake/error.html", context, status=400)


@login_not_required
def authorize(request: HttpRequest, portal_id: int | None = None) -> HttpResponseBase:
    """The consent screen: GET shows it, POST approves or declines.

    ``portal_id`` (from ``oauth/<portal_id>/authorize``) is preselected if the fake knows
    it; the user may still choose another portal.
    """
    if request.method not in ("GET", "POST"):
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    fake = get_fake()
    query = dict(parse_qsl(request.META.get("QUERY_STRING", ""), keep_blank_values=True))
    problem = _consent_problem(request, query, fake)
    if problem is not None:
        return _error_page(request, problem)
    portals = [
        {"id": portal_id, "hub_domain": info.get("hub_domain", ""), "user": info.get("user", "")}
        for portal_id, info in fake.portals.items()
    ]
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "decline":
            return HttpResponseRedirect(fake.decline(request.get_full_path()))
        try:
            chosen = int(request.POST.get("portal_id", ""))
        except ValueError:
            chosen = 0
        if action != "approve" or chosen not in fake.portals:
            return _error_page(request, _("Choose a portal, then Approve or Decline."))
        callback = fake.approve(request.get_full_path(), portal_id=chosen)
        return HttpResponseRedirect(callback)
    if portal_id not in fake.portals:
        portal_id = portals[0]["id"] if portals else None
    context: dict[str, Any] = {
        "portals": portals,
        "selected": portal_id,
        "scopes": query.get("scope", "").split(),
        "optional_scopes": query.get("optional_scope", "").split(),
        "redirect_host": urlsplit(query["redirect_uri"]).netloc,
    }
    return render(request, "hubspot_connect/fake/consent.html", context)


@csrf_exempt
@login_not_required  # called by the site's server, with no session
def api(request: HttpRequest, subpath: str) -> HttpResponse:
    """Everything under ``api/``: handed to :meth:`FakeHubSpot.handle` unchanged."""
    url = "/" + subpath
    query = request.META.get("QUERY_STRING", "")
    if query:
        url += "?" + query
    try:
        answer = get_fake().handle(
            request.method or "GET", url, dict(request.headers), request.body
        )
    except FakeTimeout:
        # Over real HTTP a hang would only stall the demo: answer as a gateway would.
        return _gateway_error(504, "FakeHubSpot: injected timeout.")
    except FakeConnectionReset:
        return _gateway_error(502, "FakeHubSpot: injected connection reset.")
    response = HttpResponse(answer.body, status=answer.status)
    if not answer.body:
        del response["Content-Type"]
    for name, value in answer.headers.items():
        response[name] = value
    return response


def _gateway_error(status: int, message: str) -> HttpResponse:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


urlpatterns = [
    path("oauth/authorize", authorize, name="authorize"),
    path("oauth/<int:portal_id>/authorize", authorize, name="authorize_portal"),
    path("api/<path:subpath>", api, name="api"),
]
