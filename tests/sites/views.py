"""Views of the test site that use the app the way a site's own code does."""

from __future__ import annotations

import hashlib

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from hubspot_connect.tokens import aget_access_token, get_access_token


def fingerprint(token: str) -> str:
    """What the views show of a token: enough to compare, nothing to use."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# Django refuses async views under ATOMIC_REQUESTS unless they opt out, as sites do.
@transaction.non_atomic_requests
async def async_token(request: HttpRequest, portal_id: int) -> JsonResponse:
    """An ``async def`` view: gets a token without blocking the event loop."""
    token = await aget_access_token(portal_id)
    return JsonResponse({"portal_id": portal_id, "token": fingerprint(token)})


class SiteError(Exception):
    """The site's own code failing after it got a token (its transaction rolls back)."""


def token_then_fail(request: HttpRequest, portal_id: int) -> HttpResponse:
    get_access_token(portal_id)
    raise SiteError("the site's own code failed after getting a token")
