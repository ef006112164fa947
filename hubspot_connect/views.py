"""ConnectView and CallbackView: thin glue between the request, the state and the tokens."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    QueryDict,
)
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.cache import never_cache

from .client import get_client
from .compat import login_not_required
from .conf import app_settings
from .connect import connect_portal
from .exceptions import HubSpotOAuthError, HubSpotUnavailable, InvalidGrant, StateError
from .permissions import has_connect_permission
from .sensitive import secret
from .state import consume_state, issue_state, safe_next_url

logger = logging.getLogger("hubspot_connect.views")
StrOrPromise = str | Promise


def redirect_uri_for(request: HttpRequest) -> str:
    return app_settings.REDIRECT_URI or request.build_absolute_uri(
        reverse("hubspot_connect:callback")
    )


# Both views check who may connect themselves (HUBSPOT_CONNECT_PERMISSION), so they opt
# out of Django 5.1's LoginRequiredMiddleware: its login redirect would carry the callback
# URL, authorization code included, into the login page's ``next``.
@method_decorator(never_cache, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
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
@method_decorator(login_not_required, name="dispatch")
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
                params[name] = secret(values[0]) if name in ("state", "code") else values[0]
        _scrub(request, [params.get("code", ""), params.get("state", "")])
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


def _scrub(request: HttpRequest, values: list[str]) -> None:
    """Remove the code and state from the request once read.

    An error report (Django's DEBUG page, the admin error email) prints the request's GET
    parameters and every META value (QUERY_STRING, and a server's RAW_URI or REQUEST_URI);
    after this they show ``[redacted]`` in their place.
    """
    query = request.GET.copy()
    for name in ("code", "state"):
        if name in query:
            query.setlist(name, ["[redacted]"] * len(query.getlist(name)))
    hidden = [form for value in values if value for form in {value, quote(value, safe="")}]
    for key, value in list(request.META.items()):
        if isinstance(value, str) and any(form in value for form in hidden):
            for form in hidden:
                value = value.replace(form, "[redacted]")
            request.META[key] = value
    request.META["QUERY_STRING"] = query.urlencode(safe="[]")
    request.GET = QueryDict(request.META["QUERY_STRING"])


def _logged(response: HttpResponse) -> HttpResponse:
    """Mark a callback error page as logged: it was, above, without secrets.

    Otherwise Django logs it to ``django.request`` with the request attached, and the
    default ``mail_admins`` handler emails the callback URL, authorization code included.
    """
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
