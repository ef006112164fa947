"""Connect a portal in a stranger's site through Django's test client and FakeHubSpot.

Run by ``install_test_site.py`` in the site's folder with DJANGO_SETTINGS_MODULE set,
against the site's real (migrated) database. Everything that talks to "HubSpot" runs in
this one process, inside ``FakeHubSpot()``, which intercepts ``requests`` in-process.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from urllib.parse import urlsplit

import django


def check(condition: object, message: str) -> None:
    if not condition:
        raise SystemExit(f"*** {message}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--template", action="append", default=[])
    parser.add_argument("--portal", type=int, default=12345678)
    args = parser.parse_args()

    django.setup()
    from cryptography.fernet import MultiFernet
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection as db
    from django.template import RequestContext, Template
    from django.test import Client, RequestFactory
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from hubspot_connect.fields import get_fernet
    from hubspot_connect.models import HubSpotConnection
    from hubspot_connect.testing import FakeHubSpot
    from hubspot_connect.tokens import api_session, get_access_token

    setup_test_environment()  # lets the test client's "testserver" host in
    portal = args.portal

    print("a superuser logs in")
    user = get_user_model().objects.create_superuser(
        "stranger", "stranger@example.com", "not-used-by-force-login"
    )
    client = Client(enforce_csrf_checks=True)  # as a browser: the CSRF token is checked
    client.force_login(user)

    with FakeHubSpot() as hubspot:
        print("GET the connect URL: a confirmation page with a form")
        connect_url = reverse("hubspot_connect:connect")
        page = client.get(connect_url + "?next=/after-connect/")
        check(page.status_code == 200, f"connect view answered GET with {page.status_code}")
        html = page.content.decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        check(token, "the confirmation page has no CSRF token")
        check('name="next" value="/after-connect/"' in html, "the form does not carry next")

        print("POST the confirmation form")
        assert token is not None
        form = {"csrfmiddlewaretoken": token.group(1), "next": "/after-connect/"}
        start = client.post(connect_url, form)
        check(start.status_code == 302, f"connect view answered POST with {start.status_code}")
        location = start["Location"]
        check(
            location.startswith(hubspot.authorize_url + "?"),
            f"connect view did not redirect to HubSpot's consent screen: {location[:80]}",
        )

        print("HubSpot's consent screen: the user approves")
        callback = hubspot.approve(location, portal_id=portal)
        parts = urlsplit(callback)
        redirect_uri = getattr(settings, "HUBSPOT_REDIRECT_URI", None)
        if redirect_uri:
            check(
                callback.startswith(redirect_uri),
                "the consent screen did not send the browser back to HUBSPOT_REDIRECT_URI",
            )

        print("GET the callback")
        done = client.get(f"{parts.path}?{parts.query}", secure=parts.scheme == "https")
        check(done.status_code == 302, f"callback answered {done.status_code}: {done.content!r}")
        check(done["Location"] == "/after-connect/", f"callback sent to {done['Location']}")

        row = HubSpotConnection.objects.get(portal_id=portal)
        check(row.status == "active", f"connection status is {row.status}")
        check(row.connected_by_id == user.pk, "connected_by is not the user who connected")
        check(hubspot.is_issued_access_token(row.access_token), "stored access token is wrong")
        check(hubspot.is_live_refresh_token(row.refresh_token), "stored refresh token is wrong")
        print(f"HubSpotConnection for portal {portal} ({row.hub_domain}) is active")

        print("the tokens are encrypted in the raw database")
        table = db.ops.quote_name(HubSpotConnection._meta.db_table)
        with db.cursor() as cursor:
            cursor.execute(
                f"SELECT access_token, refresh_token FROM {table} WHERE portal_id = %s",  # noqa: S608
                [portal],
            )
            raw_access, raw_refresh = cursor.fetchone()
        fernet: MultiFernet = get_fernet()
        for name, raw, plain in (
            ("access", raw_access, row.access_token),
            ("refresh", raw_refresh, row.refresh_token),
        ):
            check(plain and plain not in raw, f"the {name} token is stored in clear text")
            check(
                fernet.decrypt(raw.encode()).decode() == plain,
                f"the stored {name} token does not decrypt with FIELD_ENCRYPTION_KEY",
            )

        print("get_access_token() and api_session() work")
        check(get_access_token(portal) == row.access_token, "get_access_token() differs")
        details = api_session(portal).get("/account-info/v3/details", timeout=5)
        check(details.status_code == 200, f"api_session() got HTTP {details.status_code}")
        check(details.json()["portalId"] == portal, "api_session() reached the wrong portal")

        print("call_command('refresh_hubspot_tokens', '--force')")
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command("refresh_hubspot_tokens", "--force", stdout=out, stderr=err)
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        print(out.getvalue() + err.getvalue(), end="")
        check(status == 0, f"refresh_hubspot_tokens --force exited with {status}")
        summary = out.getvalue().strip().splitlines()[-1] if out.getvalue().strip() else ""
        check(
            summary.startswith("refreshed 1,") and "failed 0" in summary,
            f"unexpected summary line: {summary!r}",
        )
        old = row.access_token
        row.refresh_from_db()
        check(row.access_token != old, "the access token did not change")
        check(hubspot.is_issued_access_token(row.access_token), "refreshed token is wrong")
        check(hubspot.refresh_calls() == 1, f"{hubspot.refresh_calls()} refresh calls, not 1")

    for path in args.template:
        print(f"render the README's template snippet {path}")
        with open(path) as handle:
            snippet = handle.read()
        request = RequestFactory().get("/some/page/")
        html = Template(snippet).render(RequestContext(request))
        connect_url = reverse("hubspot_connect:connect")
        check(connect_url in html, f"the snippet does not link to {connect_url}: {html!r}")
        if re.search(r"<form[^>]*method=.post", html, re.I):
            check("csrfmiddlewaretoken" in html, "the snippet's form has no {% csrf_token %}")
        print(html.strip())

    print("the connect flow works in the stranger's site")


if __name__ == "__main__":
    sys.exit(main())
