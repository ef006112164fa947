"""ConnectView and CallbackView: thin glue between the request, the state and the tokens."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote, urlencode

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
from django.views.decorators.clickjacking import xframe_options_deny
from django.views.decorators.csrf import csrf_protect

from .client import get_client
from .compat import login_not_required
from .conf import app_settings
from .connect import connect_portal
from .exceptions import HubSpotOAuthError, HubSpotUnavailable, InvalidGrant, StateError
from .permissions import has_connect_permission
from .sensitive import secret
from .state import PendingFlow, consume_state, issue_state, safe_next_url, storable_next_url

logger = logging.getLogger("hubspot_connect.views")
StrOrPromise = str | Promise
#: HubSpot portal ids are positive integers; 18 digits stay within a 64-bit column.
PORTAL_ID = re.compile(r"[1-9][0-9]{0,17}")


def redirect_uri_for(request: HttpRequest) -> str:
    return app_settings.REDIRECT_URI or request.build_absolute_uri(
        reverse("hubspot_connect:callback")
    )


# Both views check who may connect themselves (HUBSPOT_CONNECT_PERMISSION), so they opt
# out of Django 5.1's LoginRequiredMiddleware: its login redirect would carry the callback
# URL, authorization code included, into the login page's ``next``.
@method_decorator(never_cache, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
@method_decorator(csrf_protect, name="dispatch")  # even on a site without CsrfViewMiddleware
@method_decorator(xframe_options_deny, name="dispatch")  # its button cannot be clickjacked
class ConnectView(View):
    """Start the flow: remember a fresh ``state`` and send the browser to HubSpot.

    A GET shows a confirmation form; only its POST (CSRF-checked) starts a flow, so no
    other site can start flows for a user, nor push the user's pending ones out (as
    django-allauth's ``SOCIALACCOUNT_LOGIN_ON_GET``). ``HUBSPOT_CONNECT_ON_GET = True``
    starts on GET as well. ``next`` and ``portal`` (a portal id, to open HubSpot's
    consent screen for that account) come in the query string or the form.
    """

    http_method_names = ["get", "post"]
    template_name = "hubspot_connect/connect.html"

    def get(self, request: HttpRequest) -> HttpResponseBase:
        query = request.GET
        start = app_settings.CONNECT_ON_GET
        return self.handle(request, query.get("next"), query.get("portal"), start=start)

    def post(self, request: HttpRequest) -> HttpResponseBase:
        form, query = request.POST, request.GET
        next_url = form.get("next") or query.get("next")
        return self.handle(request, next_url, form.get("portal") or query.get("portal"))

    def handle(
        self,
        request: HttpRequest,
        next_url: str | None,
        raw_portal: str | None,
        *,
        start: bool = True,
    ) -> HttpResponseBase:
        if not has_connect_permission(request):
            if not request.user.is_authenticated:
                # After logging in, the user comes back to the confirmation page.
                carried = {"next": next_url, "portal": raw_portal}
                query = urlencode({k: v for k, v in carried.items() if v}, safe="/")
                return redirect_to_login(request.path + ("?" + query if query else ""))
            raise PermissionDenied(_("You may not connect HubSpot portals."))
        portal_id = parse_portal_id(raw_portal)
        if raw_portal and portal_id is None:
            return self.bad_portal(request)
        if not start:
            return self.confirm(request, next_url, portal_id)
        redirect_uri = redirect_uri_for(request)
        state = issue_state(
            request, redirect_uri=redirect_uri, next_url=next_url, portal_id=portal_id
        )
        url = get_client().authorization_url(
            redirect_uri=redirect_uri, state=state, portal_id=portal_id
        )
        return HttpResponseRedirect(url)

    def confirm(
        self, request: HttpRequest, next_url: str | None, portal_id: int | None
    ) -> HttpResponse:
        next_url = storable_next_url(request, next_url)
        context = {
            "action": request.path,
            "next": next_url,
            # A string: a site's USE_THOUSAND_SEPARATOR must not turn 123456 into "123,456".
            "portal": "" if portal_id is None else str(portal_id),
            "cancel_url": next_url or resolve_url(app_settings.SUCCESS_URL),
        }
        return render(request, self.template_name, context)

    def bad_portal(self, request: HttpRequest) -> HttpResponse:
        context = {
            "status": 400,
            "title": _("This connection link is not valid"),
            "message": _("The portal parameter must be a HubSpot portal id (a positive number)."),
            "retry_url": request.path,
        }
        return render(request, "hubspot_connect/callback_error.html", context, status=400)


def parse_portal_id(value: str | None) -> int | None:
    """A HubSpot portal id from a query string or form: a positive integer, else ``None``."""
    if value and PORTAL_ID.fullmatch(value):
        return int(value)
    return None


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
            description = params.get("error_description", "")
            return self.declined(request, params["error"], description, flow)
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
        if flow.portal_id is not None and flow.portal_id != connection.portal_id:
            # The user picked another account on HubSpot's consent screen. What they
            # approved is stored (HubSpot issued it); the portal asked for is not fixed.
            logger.info(
                "Asked to reconnect portal %s, HubSpot connected portal %s",
                flow.portal_id,
                connection.portal_id,
            )
            messages.warning(
                request,
                _(
                    "HubSpot portal %(connected)s was connected instead of portal "
                    "%(requested)s: another account was chosen on HubSpot's consent screen. "
                    "Portal %(requested)s still needs reconnecting."
                )
                % {"connected": connection.portal_id, "requested": flow.portal_id},
            )
        else:
            if created:
                message = _("HubSpot portal %(portal)s is now connected.")
            else:
                message = _("HubSpot portal %(portal)s was reconnected.")
            messages.success(request, message % {"portal": connection.portal_id})
        return HttpResponseRedirect(
            safe_next_url(request, flow.next_url) or resolve_url(app_settings.SUCCESS_URL)
        )

    def declined(
        self, request: HttpRequest, error: str, description: str, flow: PendingFlow
    ) -> HttpResponse:
        logger.info("HubSpot authorization ended with error %r", error[:100])
        context: dict[str, Any] = {
            "error": error[:100],
            "description": description[:500],
            "retry_url": _retry_url(flow),
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


def _retry_url(flow: PendingFlow) -> str:
    """The connect view again, for the same portal and ``next`` as the declined flow."""
    carried = {"next": flow.next_url, "portal": flow.portal_id}
    query = urlencode({key: value for key, value in carried.items() if value}, safe="/")
    return reverse("hubspot_connect:connect") + ("?" + query if query else "")


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
