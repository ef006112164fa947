"""ConnectView and CallbackView: thin glue between the request, the state and the tokens."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.functional import Promise
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.cache import never_cache

from .client import get_client
from .conf import DEFAULT_PERMISSION, app_settings
from .exceptions import HubSpotOAuthError, HubSpotUnavailable, InvalidGrant, StateError
from .state import consume_state, issue_state, safe_next_url
from .tokens import connect_portal

logger = logging.getLogger("hubspot_connect.views")
StrOrPromise = str | Promise


def has_connect_permission(request: HttpRequest) -> bool:
    """Whether the user may connect a portal, per HUBSPOT_CONNECT_PERMISSION."""
    path = app_settings.CONNECT_PERMISSION
    if path:
        check = import_string(path)
        return bool(check(request))
    return bool(request.user.is_authenticated and request.user.has_perm(DEFAULT_PERMISSION))


def redirect_uri_for(request: HttpRequest) -> str:
    return app_settings.REDIRECT_URI or request.build_absolute_uri(
        reverse("hubspot_connect:callback")
    )


@method_decorator(never_cache, name="dispatch")
class ConnectView(View):
    """Start the flow: remember a fresh ``state`` and send the browser to HubSpot."""

    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponseBase:
        if not has_connect_permission(request):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            raise PermissionDenied(_("You may not connect HubSpot portals."))
        next_url = request.POST.get("next") or request.GET.get("next")
        redirect_uri = redirect_uri_for(request)
        state = issue_state(request, redirect_uri=redirect_uri, next_url=next_url)
        url = get_client().authorization_url(redirect_uri=redirect_uri, state=state)
        return HttpResponseRedirect(url)

    post = get


@method_decorator(never_cache, name="dispatch")
class CallbackView(View):
    """Finish the flow: check ``state`` first, then exchange the code and store the tokens."""

    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> HttpResponseBase:
        params: dict[str, str] = {}
        for name in ("state", "code", "error", "error_description"):
            values = request.GET.getlist(name)
            if len(values) > 1:
                return self.fail(request, 400, _("The callback repeats the %s parameter.") % name)
            if values:
                params[name] = values[0]
        try:
            flow = consume_state(request, params.get("state"))
        except StateError as exc:
            return self.fail(request, 400, str(exc), title=_("This connection link is not valid"))
        if not has_connect_permission(request):
            # Checked again (it may have been revoked while the user was at HubSpot), after
            # the state so a forged callback is a 400 for everyone. No login redirect: it
            # would carry the code into the login page's ``next``.
            raise PermissionDenied(_("You may not connect HubSpot portals."))
        if "error" in params:
            if "code" in params:
                return self.fail(request, 400, _("The callback carries both a code and an error."))
            return self.declined(request, params["error"], params.get("error_description", ""))
        code = params.get("code")
        if not code:
            return self.fail(request, 400, _("The callback has no authorization code."))
        try:
            connection, created = connect_portal(
                code=code, redirect_uri=flow.redirect_uri, user=request.user, request=request
            )
        except InvalidGrant as exc:
            logger.warning("HubSpot rejected the authorization code: %s", exc)
            return self.fail(
                request,
                400,
                _("HubSpot did not accept the authorization (it may have expired). Try again."),
            )
        except (HubSpotUnavailable, HubSpotOAuthError) as exc:
            logger.error("Connecting a HubSpot portal failed: %s", exc)
            return self.fail(
                request,
                502,
                _("HubSpot could not complete the connection. Nothing was stored; try again."),
                title=_("HubSpot did not answer as expected"),
            )
        if created:
            message = _("HubSpot portal %(portal)s is now connected.")
        else:
            message = _("HubSpot portal %(portal)s was reconnected.")
        messages.success(request, message % {"portal": connection.portal_id})
        return HttpResponseRedirect(
            safe_next_url(request, flow.next_url) or resolve_url(app_settings.SUCCESS_URL)
        )

    def declined(self, request: HttpRequest, error: str, description: str) -> HttpResponse:
        logger.info("HubSpot authorization ended with error %r", error[:100])
        context: dict[str, Any] = {
            "error": error[:100],
            "description": description[:500],
            "retry_url": reverse("hubspot_connect:connect"),
            "cancelled": error == "access_denied",
        }
        return _logged(render(request, "hubspot_connect/declined.html", context, status=400))

    def fail(
        self,
        request: HttpRequest,
        status: int,
        message: StrOrPromise,
        *,
        title: StrOrPromise | None = None,
    ) -> HttpResponse:
        if status < 500:
            logger.warning("HubSpot callback rejected: %s", message)
        context = {
            "status": status,
            "title": title or _("The HubSpot connection failed"),
            "message": message,
            "retry_url": reverse("hubspot_connect:connect"),
        }
        return _logged(
            render(request, "hubspot_connect/callback_error.html", context, status=status)
        )


def _logged(response: HttpResponse) -> HttpResponse:
    """Mark a callback error page as logged: it was, above, without secrets.

    Otherwise Django logs it to ``django.request`` with the request attached, and the
    default ``mail_admins`` handler emails the callback URL, authorization code included.
    """
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
