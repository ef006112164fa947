"""The connection admin: what staff see, what they may do, and that no page shows a token."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hubspot_connect.admin import EXPIRING, display_status, hubspot_portal_url
from hubspot_connect.models import HubSpotConnection, HubSpotConnectionEvent
from hubspot_connect.testing import FakeHubSpot

CHANGELIST = reverse("admin:hubspot_connect_hubspotconnection_changelist")
MakeConnection = Callable[..., HubSpotConnection]


def change_url(connection: HubSpotConnection) -> str:
    return reverse("admin:hubspot_connect_hubspotconnection_change", args=[connection.pk])


def history_url(connection: HubSpotConnection) -> str:
    return reverse("admin:hubspot_connect_hubspotconnection_history", args=[connection.pk])


def text(response: Any) -> str:
    # timesince() glues number and unit with a no-break space.
    return response.content.decode().replace("\xa0", " ")


def run_action(
    client: Client, action: str, rows: Iterable[HubSpotConnection], **extra: str
) -> Any:
    data: dict[str, Any] = {"action": action, "_selected_action": [row.pk for row in rows]}
    data.update(extra)
    return client.post(CHANGELIST, data, follow=True)


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def staff(*codenames: str, username: str = "staff") -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="hubspot_connect", codename=codename)
        )
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def store_undecryptable_token(connection: HubSpotConnection) -> None:
    """Put ciphertext no configured key opens into the row, past the field's encryption."""
    meta = HubSpotConnection._meta
    quote_name = db_connection.ops.quote_name
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote_name(meta.db_table)} SET {quote_name('access_token')} = %s, "  # noqa: S608
            f"{quote_name('refresh_token')} = %s WHERE {quote_name('id')} = %s",
            ["gAAAAABnot-a-real-fernet-token", "gAAAAABnot-either", connection.pk],
        )


def assert_no_token(html: str, tokens: Iterable[str]) -> None:
    for token in tokens:
        assert token, "a connection under test lost its token"
        for start in range(len(token) - 11):
            piece = token[start : start + 12]
            assert piece not in html, f"12 characters of a token (at {start}) are on the page"


# -- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hublet", "host"),
    [
        ("na1", "app.hubspot.com"),
        ("", "app.hubspot.com"),
        ("eu1", "app-eu1.hubspot.com"),
        ("na2", "app-na2.hubspot.com"),
        ("EU1", "app-eu1.hubspot.com"),
        ("evil.example/x", "app.hubspot.com"),
        ("eu1\n", "app.hubspot.com"),
    ],
)
def test_portal_url_uses_the_hublet_host(hublet: str, host: str) -> None:
    connection = HubSpotConnection(portal_id=4242, hublet=hublet)
    assert hubspot_portal_url(connection) == f"https://{host}/settings/4242"


@pytest.mark.parametrize(
    ("status", "expires_in", "shown"),
    [
        ("active", timedelta(minutes=16), "active"),
        ("active", timedelta(minutes=14), EXPIRING),
        ("active", timedelta(minutes=-5), EXPIRING),
        ("active", None, EXPIRING),
        ("needs_reauth", timedelta(hours=1), "needs_reauth"),
        ("disconnected", None, "disconnected"),
    ],
)
def test_display_status(status: str, expires_in: timedelta | None, shown: str) -> None:
    now = timezone.now()
    expires_at = None if expires_in is None else now + expires_in
    connection = HubSpotConnection(portal_id=1, status=status, expires_at=expires_at)
    assert display_status(connection, now) == shown


# -- the list ----------------------------------------------------------------------------------


@pytest.fixture
def portals(make_connection: MakeConnection, django_user_model: type[User]) -> dict[str, Any]:
    ada = django_user_model.objects.create_user("ada", "ada@lovelace.example", "pw")
    now = timezone.now()
    return {
        "active": make_connection(
            87654321,
            expires_in=12 * 60 * 60,
            hub_domain="acme-europe.hubspot.com",
            hublet="eu1",
            hubspot_user_email="ops@acme-europe.example",
            connected_by=ada,
            last_refreshed_at=now - timedelta(minutes=30),
        ),
        "expiring": make_connection(
            11111111, expires_in=12 * 60 + 30, hub_domain="soon.hubspot.com", hublet="na1"
        ),
        "expired": make_connection(22222222, expires_in=-(3 * 3600 + 60), hub_domain="old.com"),
        "reauth": make_connection(
            33333333,
            status="needs_reauth",
            hub_domain="revoked.hubspot.com",
            refresh_failures=2,
            last_error="HubSpot rejected the refresh token (BAD_REFRESH_TOKEN).",
        ),
        "gone": make_connection(
            44444444,
            status="disconnected",
            hub_domain="gone.hubspot.com",
            access_token="",
            refresh_token="",
            expires_at=None,
        ),
    }


def row_html(html: str, portal_id: int) -> str:
    """The changelist table row of one portal."""
    for row in re.findall(r"<tr>.*?</tr>", html, flags=re.S):
        if f"/settings/{portal_id}" in row:
            return str(row)
    raise AssertionError(f"portal {portal_id} is not listed")


def test_changelist_shows_every_portal_with_status_and_links(
    admin_client: Client, portals: dict[str, HubSpotConnection]
) -> None:
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = text(response)
    active = row_html(html, 87654321)
    assert 'href="https://app-eu1.hubspot.com/settings/87654321"' in active
    assert 'rel="noopener noreferrer"' in active
    assert "acme-europe.hubspot.com" in active
    assert f'href="{change_url(portals["active"])}"' in active
    assert 'class="hubspot-badge hubspot-badge-active">active<' in active
    assert "in 11 hours" in active or "in 12 hours" in active
    assert "30 minutes ago" in active
    assert "by ada<" in active
    assert 'class="hubspot-badge hubspot-badge-expiring">expiring soon<' in row_html(
        html, 11111111
    )
    assert "in 12 minutes" in row_html(html, 11111111)
    expired = row_html(html, 22222222)
    assert "hubspot-badge-expiring" in expired
    assert "expired 3 hours ago" in expired
    reauth = row_html(html, 33333333)
    assert "hubspot-badge-needs_reauth" in reauth
    assert ">needs re-auth<" in reauth
    assert 'class="field-failures">2<' in reauth
    gone = row_html(html, 44444444)
    assert ">disconnected<" in gone
    assert 'href="https://app.hubspot.com/settings/11111111"' in row_html(html, 11111111)


CONNECT_FORM = re.compile(
    r'<form id="hubspot-connect-form" method="post" action="([^"]+)" class="hubspot-tool-form">'
    r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]+">'
    r'<input type="hidden" name="next" value="([^"]+)">'
    r'<button type="submit" class="hubspot-tool hubspot-tool-add">'
    r"Connect a HubSpot portal</button></form>"
)


def test_reconnect_offered_only_for_portals_that_need_it(
    admin_client: Client, portals: dict[str, HubSpotConnection]
) -> None:
    html = text(admin_client.get(CHANGELIST))
    for portal_id in (33333333, 44444444):
        # A button of the connect form above the list (rows sit inside the actions form).
        assert (
            f'<button type="submit" form="hubspot-connect-form" name="portal" '
            f'value="{portal_id}" class="hubspot-reconnect"'
        ) in row_html(html, portal_id)
    for portal_id in (87654321, 11111111, 22222222):
        assert "Reconnect" not in row_html(html, portal_id)
    assert 'href="/hubspot/connect/' not in html  # never a link: a GET changes the session


def test_connect_button_is_a_post_form_that_starts_the_flow_and_comes_back(
    admin_client: Client, fake_hubspot: FakeHubSpot, db: None
) -> None:
    html = text(admin_client.get(CHANGELIST))
    found = CONNECT_FORM.search(html)
    assert found, "no connect form"
    assert found.groups() == (reverse("hubspot_connect:connect"), CHANGELIST)
    start = admin_client.post(found.group(1), {"next": found.group(2)})
    assert start.status_code == 302
    callback = admin_client.get(fake_hubspot.approve(start["Location"], portal_id=87654321))
    assert callback["Location"] == CHANGELIST
    assert HubSpotConnection.objects.get(portal_id=87654321).hublet == "eu1"


def test_connect_form_needs_the_csrf_token(fake_hubspot: FakeHubSpot, db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    refused = client.post(reverse("hubspot_connect:connect"), {"next": CHANGELIST})
    assert refused.status_code == 403
    html = text(client.get(CHANGELIST))
    found = CONNECT_FORM.search(html)
    assert found
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', found.group(0))
    assert token
    started = client.post(
        found.group(1), {"next": CHANGELIST, "csrfmiddlewaretoken": token.group(1)}
    )
    assert started.status_code == 302
    assert started["Location"].startswith(fake_hubspot.authorize_url.rsplit("/oauth", 1)[0])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "active"}, {87654321}),
        ({"status": "expiring"}, {11111111, 22222222}),
        ({"status": "needs_reauth"}, {33333333}),
        ({"status": "disconnected"}, {44444444}),
        ({"expires": "expired"}, {22222222}),
        ({"expires": "15m"}, {11111111, 22222222}),
        ({"expires": "1h"}, {11111111, 22222222, 33333333}),
        ({"expires": "later"}, {87654321}),
        ({"q": "3333"}, {33333333}),
        ({"q": "acme-europe"}, {87654321}),
        ({"q": "ops@acme"}, {87654321}),
        ({"q": "ada"}, {87654321}),
        ({"q": "lovelace.example"}, {87654321}),
        ({"q": "nothing-like-this"}, set()),
    ],
)
def test_filters_and_search(
    admin_client: Client,
    portals: dict[str, HubSpotConnection],
    query: dict[str, str],
    expected: set[int],
) -> None:
    response = admin_client.get(CHANGELIST, query)
    assert response.status_code == 200
    assert {row.portal_id for row in response.context["cl"].result_list} == expected


def test_changelist_query_count_does_not_grow_with_rows(
    admin_client: Client, django_user_model: type[User], db: None
) -> None:
    def add(first: int, count: int) -> None:
        users = django_user_model.objects.bulk_create(
            [django_user_model(username=f"user{n}") for n in range(first, first + count)]
        )
        HubSpotConnection.objects.bulk_create(
            HubSpotConnection(
                portal_id=1000 + n,
                hub_domain=f"p{n}.hubspot.com",
                connected_by=user,
                access_token=f"CJ-access-{n}",
                refresh_token=f"na1-refresh-{n}",
                expires_at=timezone.now() + timedelta(minutes=n % 40),
                status=("active", "needs_reauth", "disconnected")[n % 3],
            )
            for n, user in zip(range(first, first + count), users, strict=True)
        )

    add(0, 3)
    admin_client.get(CHANGELIST)  # warm caches (content types, permissions)
    with CaptureQueriesContext(db_connection) as few:
        assert admin_client.get(CHANGELIST).status_code == 200
    add(3, 297)
    with CaptureQueriesContext(db_connection) as many:
        response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 300
    assert len(many.captured_queries) == len(few.captured_queries)


def test_pages_render_without_decrypting_tokens(
    admin_client: Client, portals: dict[str, HubSpotConnection]
) -> None:
    """A wrong FIELD_ENCRYPTION_KEY must not take the admin down: tokens are deferred."""
    for connection in portals.values():
        store_undecryptable_token(connection)
    assert admin_client.get(CHANGELIST).status_code == 200
    assert admin_client.get(change_url(portals["active"])).status_code == 200
    assert admin_client.get(CHANGELIST, {"q": "acme"}).status_code == 200


# -- the detail page ---------------------------------------------------------------------------


def test_detail_page_is_read_only_with_scopes_and_last_error(
    admin_client: Client, portals: dict[str, HubSpotConnection]
) -> None:
    connection = portals["reauth"]
    response = admin_client.get(change_url(connection))
    assert response.status_code == 200
    html = text(response)
    assert "<li><code>oauth</code></li><li><code>crm.objects.contacts.read</code></li>" in html
    assert "HubSpot rejected the refresh token (BAD_REFRESH_TOKEN)." in html
    assert 'href="https://app.hubspot.com/settings/33333333"' in html
    assert "Open in HubSpot" in html
    main_form = html[html.index('id="hubspotconnection_form"') :]
    fields = re.findall(r"<(?:input|textarea|select)\b[^>]*\bname=\"([^\"]*)\"", main_form)
    assert set(fields) == {"csrfmiddlewaretoken"}
    assert 'name="_save"' not in html
    assert "Token expires" in html  # about the token; the token itself is never there
    assert "access_token" not in html
    assert "refresh_token" not in html
    reconnect = re.search(
        r'<form method="post" action="([^"]+)" class="hubspot-tool-form">'
        r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]+">'
        r'<input type="hidden" name="next" value="([^"]+)">'
        r'<input type="hidden" name="portal" value="(\d+)">'
        r'<button type="submit" class="hubspot-tool hubspot-tool-add">Reconnect</button>',
        html,
    )
    assert reconnect
    assert reconnect.groups() == (
        reverse("hubspot_connect:connect"),
        change_url(connection),
        "33333333",
    )


def test_detail_page_of_an_active_portal_offers_no_reconnect(
    admin_client: Client, portals: dict[str, HubSpotConnection]
) -> None:
    html = text(admin_client.get(change_url(portals["active"])))
    assert "Reconnect" not in html
    assert 'href="https://app-eu1.hubspot.com/settings/87654321"' in html


def test_detail_page_without_scopes_or_history(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    connection = make_connection(55555555, scopes=[], last_refreshed_at=None)
    html = text(admin_client.get(change_url(connection)))
    assert '<ul class="hubspot-scopes">' not in html
    assert re.search(r"Granted scopes:</label>\s*<div class=\"readonly\">-</div>", html)
    assert re.search(r"Last refresh:</label>\s*<div class=\"readonly\">-</div>", html)


def test_detail_page_of_an_unknown_connection_redirects(admin_client: Client, db: None) -> None:
    response = admin_client.get(
        reverse("admin:hubspot_connect_hubspotconnection_change", args=[987654]), follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("admin:index")
    assert "987654" in messages_of(response)[0]


def test_detail_page_cannot_be_saved(
    admin_client: Client, portals: dict[str, HubSpotConnection]
) -> None:
    connection = portals["active"]
    response = admin_client.post(change_url(connection), {"hub_domain": "changed.example"})
    assert response.status_code == 403
    connection.refresh_from_db()
    assert connection.hub_domain == "acme-europe.hubspot.com"


def test_no_add_form_and_no_delete(
    admin_client: Client, portals: dict[str, HubSpotConnection]
) -> None:
    assert admin_client.get(
        reverse("admin:hubspot_connect_hubspotconnection_add")
    ).status_code == (403)
    delete = reverse("admin:hubspot_connect_hubspotconnection_delete", args=[portals["gone"].pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    response = admin_client.get(CHANGELIST)
    actions = [value for value, _label in response.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in actions
    assert set(actions) == {"", "refresh_tokens", "disconnect"}
    assert run_action(admin_client, "delete_selected", [portals["gone"]]).status_code == 200
    assert HubSpotConnection.objects.filter(pk=portals["gone"].pk).exists()
    index = text(admin_client.get(reverse("admin:index")))
    assert reverse("admin:hubspot_connect_hubspotconnection_add") not in index


# -- no token on any page ----------------------------------------------------------------------


def test_no_admin_page_shows_a_token(
    admin_client: Client, portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    rows = list(HubSpotConnection.objects.exclude(status="disconnected"))
    tokens = [token for row in rows for token in (row.access_token, row.refresh_token)]
    pages = [admin_client.get(CHANGELIST), admin_client.get(CHANGELIST, {"q": "hubspot"})]
    pages += [admin_client.get(change_url(row)) for row in rows]
    refreshed = run_action(admin_client, "refresh_tokens", rows)
    assert "Refreshed the tokens of 3 portals" in text(refreshed)
    confirmation = run_action(admin_client, "disconnect", rows)
    assert "Disconnect these 4 HubSpot portals?" in text(confirmation)
    fake_hubspot.fail("status", status=503, endpoint="revoke")
    disconnected = run_action(admin_client, "disconnect", rows, post="yes")
    assert "Disconnected 3 portals" in text(disconnected)
    assert "was not disconnected" in text(disconnected)
    pages += [refreshed, confirmation, disconnected]
    pages += [admin_client.get(history_url(row)) for row in rows]
    for row in rows:
        row.refresh_from_db()
        tokens += [row.access_token, row.refresh_token]
    assert "Refreshed the tokens." in text(pages[-1]) + text(pages[-2])
    for page in pages:
        assert page.status_code == 200
        assert_no_token(text(page), [token for token in tokens if token])


# -- permissions -------------------------------------------------------------------------------


def test_view_only_staff_see_the_list_but_cannot_act(
    portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    client = client_for(staff("view_hubspotconnection"))
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    html = text(response)
    assert "87654321" in html
    assert 'name="action"' not in html
    assert "Connect a HubSpot portal" not in html
    assert "Reconnect" not in html
    assert client.get(change_url(portals["reauth"])).status_code == 200
    assert "Reconnect" not in text(client.get(change_url(portals["reauth"])))
    before = portals["active"].access_token
    for action in ("refresh_tokens", "disconnect"):
        extra = {"post": "yes"} if action == "disconnect" else {}
        response = run_action(client, action, [portals["active"]], **extra)
        assert response.status_code == 200  # the list again, as for a GET
        assert messages_of(response) == []
    portals["active"].refresh_from_db()
    assert portals["active"].access_token == before
    assert portals["active"].status == "active"
    assert fake_hubspot.refresh_calls() == 0
    assert client.get(reverse("admin:hubspot_connect_hubspotconnection_add")).status_code == 403


def test_change_permission_allows_refresh_but_not_disconnect(
    portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    client = client_for(staff("change_hubspotconnection"))
    response = client.get(CHANGELIST)
    actions = {value for value, _label in response.context["action_form"].fields["action"].choices}
    assert actions == {"", "refresh_tokens"}
    response = run_action(client, "disconnect", [portals["active"]], post="yes")
    assert "No action selected." in messages_of(response)
    portals["active"].refresh_from_db()
    assert portals["active"].status == "active"
    response = run_action(client, "refresh_tokens", [portals["active"]])
    assert messages_of(response) == ["Refreshed the tokens of 1 portal: 87654321."]


def test_delete_permission_allows_disconnect(
    portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    client = client_for(staff("view_hubspotconnection", "delete_hubspotconnection"))
    response = client.get(CHANGELIST)
    actions = {value for value, _label in response.context["action_form"].fields["action"].choices}
    assert actions == {"", "disconnect"}
    response = run_action(client, "disconnect", [portals["active"]], post="yes")
    assert messages_of(response) == ["Disconnected 1 portal: 87654321."]


def test_connect_permission_shows_the_connect_button(
    portals: dict[str, HubSpotConnection],
) -> None:
    client = client_for(staff("view_hubspotconnection", "add_hubspotconnection"))
    html = text(client.get(CHANGELIST))
    assert "Connect a HubSpot portal" in html
    assert 'class="hubspot-reconnect"' in row_html(html, 44444444)


# -- refresh tokens now ------------------------------------------------------------------------


def test_refresh_action_stores_new_tokens_and_logs_it(
    admin_client: Client, portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    rows = [portals["active"], portals["expired"]]
    before = {row.pk: row.access_token for row in rows}
    response = run_action(admin_client, "refresh_tokens", rows)
    assert messages_of(response) == ["Refreshed the tokens of 2 portals: 22222222, 87654321."]
    for row in rows:
        row.refresh_from_db()
        assert row.access_token != before[row.pk]
        assert fake_hubspot.is_issued_access_token(row.access_token)
        assert row.last_refreshed_at is not None
    entry = LogEntry.objects.get(object_id=str(portals["active"].pk))
    assert entry.get_change_message() == "Refreshed the tokens."


def test_refresh_action_reports_each_outcome(
    admin_client: Client, portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    fake_hubspot.revoke_all(11111111)  # uninstalled: invalid_grant
    held = portals["expired"]
    HubSpotConnection.objects.filter(pk=held.pk).update(
        lease_expires_at=timezone.now() + timedelta(minutes=1)  # another worker refreshes it
    )
    rows = list(portals.values())
    response = run_action(admin_client, "refresh_tokens", rows)
    assert messages_of(response) == [
        "Refreshed the tokens of 1 portal: 87654321.",
        "1 portal was being refreshed elsewhere at the same moment and was left to that: "
        "22222222.",
        "HubSpot rejected the refresh token of 1 portal; it needs re-auth, reconnect it: "
        "11111111.",
        "Not refreshed: 2 portals are disconnected or need re-auth; reconnect them first: "
        "33333333, 44444444.",
    ]
    levels = [message.tags for message in response.context["messages"]]
    assert levels == ["success", "info", "warning", "warning"]
    assert HubSpotConnection.objects.get(portal_id=11111111).status == "needs_reauth"
    html = text(response)
    assert "hubspot-badge-needs_reauth" in row_html(html, 11111111)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"kind": "status", "status": 503, "times": 10}, "HubSpot is unavailable (503)"),
        ({"kind": "timeout", "times": 10}, "HubSpot is unavailable (no answer)"),
        ({"kind": "status", "status": 429, "retry_after": 5}, "HubSpot is unavailable (429)"),
    ],
)
def test_refresh_action_reports_an_outage_and_keeps_the_tokens(
    admin_client: Client,
    portals: dict[str, HubSpotConnection],
    fake_hubspot: FakeHubSpot,
    fault: dict[str, Any],
    reason: str,
) -> None:
    connection = portals["active"]
    before = (connection.access_token, connection.refresh_token)
    fake_hubspot.fail(**fault)
    response = run_action(admin_client, "refresh_tokens", [connection])
    assert messages_of(response) == [
        f"Refreshing portal 87654321 failed: {reason}. The old tokens were kept; try again later."
    ]
    assert response.context["messages"]._loaded_messages[0].tags == "error"
    connection.refresh_from_db()
    assert (connection.access_token, connection.refresh_token) == before
    assert connection.status == "active"
    assert connection.refresh_failures == 1
    assert not LogEntry.objects.exists()


def test_refresh_action_stops_at_a_refusal_of_the_apps_credentials(
    admin_client: Client,
    portals: dict[str, HubSpotConnection],
    settings: Any,
    fake_hubspot: FakeHubSpot,
) -> None:
    settings.HUBSPOT_CLIENT_SECRET = "not-the-secret-hubspot-knows"  # invalid_client
    rows = [portals["active"], portals["expiring"], portals["expired"]]
    response = run_action(admin_client, "refresh_tokens", rows)
    # One message, not one per portal: the app's credentials are wrong, not the portals.
    assert messages_of(response) == [
        "HubSpot refused the app's own credentials (invalid_client): check "
        "HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET against the app's Auth settings in "
        "HubSpot. No portal was changed."
    ]
    assert "not-the-secret" not in text(response)
    assert sum(1 for _m, path, _f in fake_hubspot.requests if path.endswith("/token")) == 1
    assert not HubSpotConnection.objects.filter(refresh_failures__gt=0, status="active").exists()
    event = HubSpotConnectionEvent.objects.get()
    assert (event.kind, event.connection_id) == ("credentials_rejected", None)
    assert event.actor is not None
    assert event.actor.get_username() == "admin"


def test_refresh_action_isolates_a_row_that_does_not_decrypt(
    admin_client: Client, portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    store_undecryptable_token(portals["expiring"])
    response = run_action(admin_client, "refresh_tokens", [portals["expiring"], portals["active"]])
    assert messages_of(response) == [
        "Portal 11111111: its stored tokens cannot be decrypted with FIELD_ENCRYPTION_KEY; "
        "nothing was changed.",
        "Refreshed the tokens of 1 portal: 87654321.",
    ]
    assert fake_hubspot.refresh_calls() == 1


def test_long_portal_lists_are_shortened(
    admin_client: Client, make_connection: MakeConnection
) -> None:
    rows = [
        make_connection(5000 + n, status="disconnected", access_token="", refresh_token="")
        for n in range(23)
    ]
    response = run_action(admin_client, "refresh_tokens", rows)
    (message,) = messages_of(response)
    assert message.startswith("Not refreshed: 23 portals are disconnected")
    assert "5019 and 3 more." in message
    assert "5020" not in message


# -- disconnect --------------------------------------------------------------------------------


def test_disconnect_asks_first_then_revokes_and_keeps_the_row(
    admin_client: Client, portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    rows = [portals["active"], portals["reauth"], portals["gone"]]
    refresh_tokens = {row.pk: row.refresh_token for row in rows}
    confirm = run_action(admin_client, "disconnect", rows)
    assert confirm.status_code == 200
    assert confirm.templates[0].name.endswith("disconnect_selected_confirmation.html")
    html = text(confirm)
    assert "Disconnect these 2 HubSpot portals?" in html
    assert "HubSpot portal 87654321 (acme-europe.hubspot.com)" in html
    assert "HubSpot portal 33333333 (revoked.hubspot.com)" in html
    assert "Already disconnected, left as they are: 44444444" in html
    for row in rows:
        assert f'name="_selected_action" value="{row.pk}"' in html
    assert 'name="post" value="yes"' in html
    assert fake_hubspot.is_live_refresh_token(refresh_tokens[portals["active"].pk])
    assert HubSpotConnection.objects.get(pk=portals["active"].pk).status == "active"

    done = run_action(admin_client, "disconnect", rows, post="yes")
    assert messages_of(done) == ["Disconnected 2 portals: 33333333, 87654321."]
    for row in rows[:2]:
        row.refresh_from_db()
        assert row.status == "disconnected"
        assert (row.access_token, row.refresh_token, row.expires_at) == ("", "", None)
    assert not fake_hubspot.is_live_refresh_token(refresh_tokens[portals["active"].pk])
    assert LogEntry.objects.filter(object_id=str(portals["active"].pk)).count() == 1
    history = text(admin_client.get(history_url(portals["active"])))
    assert "Disconnected: revoked at HubSpot, tokens wiped." in history


def test_disconnect_during_a_hubspot_outage_leaves_the_row_alone(
    admin_client: Client, portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    fake_hubspot.fail("status", status=503, times=1, endpoint="revoke")
    rows = [portals["active"], portals["expiring"]]
    before = {row.pk: (row.access_token, row.refresh_token) for row in rows}
    response = run_action(admin_client, "disconnect", rows, post="yes")
    # Rows are handled in portal id order: 11111111 meets the outage, 87654321 does not.
    assert messages_of(response) == [
        "Portal 11111111 was not disconnected: HubSpot could not be reached to revoke its "
        "tokens. Nothing was changed; try again later.",
        "Disconnected 1 portal: 87654321.",
    ]
    kept = HubSpotConnection.objects.get(portal_id=11111111)
    assert kept.status == "active"
    assert (kept.access_token, kept.refresh_token) == before[portals["expiring"].pk]
    assert fake_hubspot.is_live_refresh_token(kept.refresh_token)
    assert HubSpotConnection.objects.get(portal_id=87654321).status == "disconnected"


def test_disconnect_of_rows_already_disconnected_does_nothing(
    admin_client: Client, portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    response = run_action(admin_client, "disconnect", [portals["gone"]])
    assert response.templates[0].name == "admin/hubspot_connect/hubspotconnection/change_list.html"
    assert messages_of(response) == ["The selected portals are already disconnected."]
    assert not any(path.endswith("/revoke") for _m, path, _f in fake_hubspot.requests)


def test_disconnect_reports_a_row_that_does_not_decrypt(
    admin_client: Client, portals: dict[str, HubSpotConnection]
) -> None:
    store_undecryptable_token(portals["active"])
    response = run_action(admin_client, "disconnect", [portals["active"]], post="yes")
    assert messages_of(response) == [
        "Portal 87654321: its stored tokens cannot be decrypted with FIELD_ENCRYPTION_KEY; "
        "nothing was changed."
    ]
    assert HubSpotConnection.objects.filter(portal_id=87654321, status="active").exists()
