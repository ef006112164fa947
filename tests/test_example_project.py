"""The example project: its settings, pages, the Call HubSpot view and demo.py's setup."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import runpy
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from django.urls import reverse

from example_project import demo
from example_project.log_filters import RedactQuerySecrets, redact
from example_project.views import portals_for
from hubspot_connect.models import NEEDS_REAUTH, HubSpotConnection
from hubspot_connect.session import HubSpotSession
from hubspot_connect.testing import FakeHubSpot

REPO = Path(__file__).resolve().parents[1]
SETTINGS = REPO / "example_project" / "settings.py"
KEY = "Hq4vVtI1WmQ0WvW8u5Jk2R9dNnS3wYQm9oQ0ZlZs7dE="

# -- settings ------------------------------------------------------------------------------


@pytest.fixture
def load_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[..., dict[str, Any]]:
    """Run settings.py afresh with only the given environment and ``.env`` lines."""
    for name in list(os.environ):
        if name.startswith(("HUBSPOT_", "DEMO_", "DJANGO_")) or name in (
            "DEBUG",
            "DATABASE_URL",
            "FIELD_ENCRYPTION_KEY",
            "ALLOWED_HOSTS",
        ):
            monkeypatch.delenv(name)

    def load(dotenv: str | None = None, **environ: str) -> dict[str, Any]:
        env_file = tmp_path / "settings.env"
        if dotenv is not None:
            env_file.write_text(dotenv)
        monkeypatch.setenv("DEMO_ENV_FILE", str(env_file))
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        before = dict(os.environ)
        loaded = runpy.run_path(str(SETTINGS))
        assert dict(os.environ) == before, "settings.py must not write to os.environ"
        return loaded

    return load


def test_settings_without_env_file_run_the_fake(load_settings: Callable[..., Any]) -> None:
    loaded = load_settings()
    assert loaded["HUBSPOT_FAKE"] is True
    assert loaded["DEBUG"] is True
    assert loaded["FIELD_ENCRYPTION_KEY"] == ""  # system check E008 says what to do
    assert loaded["HUBSPOT_CLIENT_ID"] == "fake-client-id"
    assert loaded["HUBSPOT_AUTHORIZE_URL"] == "http://127.0.0.1:8000/fake-hubspot/oauth/authorize"
    assert loaded["HUBSPOT_API_BASE_URL"] == "http://127.0.0.1:8000/fake-hubspot/api"
    assert loaded["HUBSPOT_REDIRECT_URI"] == "http://127.0.0.1:8000/hubspot/callback/"
    assert loaded["HUBSPOT_SCOPES"] == ["oauth", "crm.objects.contacts.read"]
    assert loaded["HUBSPOT_FAKE_STORE"].endswith("example_project/var/fake-hubspot.json")


def test_settings_read_env_file_and_follow_the_demo_port(
    load_settings: Callable[..., Any],
) -> None:
    loaded = load_settings(
        f"# a comment\nFIELD_ENCRYPTION_KEY={KEY}\nDJANGO_SECRET_KEY='s3cret'\nDEMO_PORT=8123\n"
    )
    assert loaded["FIELD_ENCRYPTION_KEY"] == KEY
    assert loaded["SECRET_KEY"] == "s3cret"
    assert loaded["HUBSPOT_FAKE"] is True
    assert loaded["HUBSPOT_AUTHORIZE_URL"] == "http://127.0.0.1:8123/fake-hubspot/oauth/authorize"
    assert loaded["HUBSPOT_REDIRECT_URI"] == "http://127.0.0.1:8123/hubspot/callback/"


def test_environment_wins_over_env_file(load_settings: Callable[..., Any]) -> None:
    loaded = load_settings("DEMO_PORT=8123\nDEMO_HOST=0.0.0.0\n", DEMO_PORT="9000")
    # A bind on every interface is still browsed on the loopback address.
    assert loaded["DEMO_URL"] == "http://127.0.0.1:9000"


def test_real_credentials_turn_the_fake_off(load_settings: Callable[..., Any]) -> None:
    loaded = load_settings(
        "HUBSPOT_CLIENT_ID=real-id\nHUBSPOT_CLIENT_SECRET=real-secret\n"
        "HUBSPOT_REDIRECT_URI=http://localhost:8000/hubspot/callback/\n"
        "HUBSPOT_SCOPES=oauth crm.objects.companies.read\n"
    )
    assert loaded["HUBSPOT_FAKE"] is False
    assert loaded["HUBSPOT_CLIENT_ID"] == "real-id"
    assert loaded["HUBSPOT_CLIENT_SECRET"] == "real-secret"
    assert "HUBSPOT_AUTHORIZE_URL" not in loaded  # HubSpot's own
    assert "HUBSPOT_API_BASE_URL" not in loaded
    assert loaded["HUBSPOT_SCOPES"] == ["oauth", "crm.objects.companies.read"]
    # The session cookie must come back to the callback: browse on the redirect's origin.
    assert loaded["DEMO_URL"] == "http://localhost:8000"


def test_real_mode_without_redirect_uri_uses_localhost(load_settings: Callable[..., Any]) -> None:
    loaded = load_settings(HUBSPOT_CLIENT_ID="real-id", DEMO_PORT="8001")
    assert loaded["HUBSPOT_REDIRECT_URI"] == "http://localhost:8001/hubspot/callback/"


def test_fake_can_be_forced_on_with_a_client_id(load_settings: Callable[..., Any]) -> None:
    loaded = load_settings("HUBSPOT_CLIENT_ID=real-id\nHUBSPOT_FAKE=1\n")
    assert loaded["HUBSPOT_FAKE"] is True
    assert loaded["HUBSPOT_CLIENT_ID"] == "fake-client-id"


def test_debug_off_needs_a_secret_key(load_settings: Callable[..., Any]) -> None:
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECRET_KEY"):
        load_settings(DEBUG="0")


def test_manage_py_check_passes_in_fake_mode(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"FIELD_ENCRYPTION_KEY={KEY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSPOT_", "DJANGO_"))}
    env.update(DEMO_ENV_FILE=str(env_file), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


# -- pages (the example project's URLs on the test settings) ----------------------------------


@pytest.fixture
def site() -> Iterator[None]:
    templates = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [REPO / "example_project" / "templates"],
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                    "example_project.views.demo_context",
                ]
            },
        }
    ]
    with override_settings(
        ROOT_URLCONF="example_project.urls",
        TEMPLATES=templates,
        LOGIN_URL="login",
        HUBSPOT_FAKE=False,
    ):
        yield


@pytest.fixture
def admin_client(client: Client, db: None) -> Client:
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


def call(client: Client, portal_id: int = 12345678, what: str = "account") -> Any:
    return client.post(reverse("call_hubspot", args=[portal_id]), {"call": what})


@pytest.mark.usefixtures("site")
def test_home_logged_out_says_where_to_log_in(client: Client, db: None) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert reverse("login") in html
    assert "make demo" in html
    assert "Live mode" in html  # HUBSPOT_FAKE is off here
    assert 'action="/hubspot/connect/"' not in html  # no connect form for anonymous users
    with override_settings(HUBSPOT_FAKE=True):
        assert "Demo mode" in client.get("/").content.decode()


@pytest.mark.usefixtures("site")
def test_login_page_renders(client: Client, db: None) -> None:
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert 'name="password"' in response.content.decode()


@pytest.mark.usefixtures("site")
def test_home_lists_connections_without_tokens(
    admin_client: Client, make_connection: Callable[..., HubSpotConnection]
) -> None:
    connection = make_connection(12345678)
    make_connection(87654321, status=NEEDS_REAUTH)
    response = admin_client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "portal-12345678.hubspot.com" in html
    assert "crm.objects.contacts.read" in html
    assert "needs re-auth" in html
    assert html.count("Call HubSpot</button>") == 1  # active portals only
    assert reverse("call_hubspot", args=[12345678]) in html
    # Connect (a form: a POST starts the flow) and Reconnect for the portal needing it.
    assert html.count(f'<form method="post" action="{reverse("hubspot_connect:connect")}">') == 2
    assert html.count("csrfmiddlewaretoken") == 4  # log out, call, reconnect, connect
    assert html.count('<input type="hidden" name="portal" value="87654321">') == 1
    assert 'name="portal" value="12345678"' not in html
    assert "Reconnect</button>" in html
    assert reverse("admin:hubspot_connect_hubspotconnection_changelist") in html
    assert connection.access_token not in html
    assert connection.refresh_token not in html


@pytest.mark.usefixtures("site")
def test_call_hubspot_shows_account_details(
    admin_client: Client,
    make_connection: Callable[..., HubSpotConnection],
    fake_hubspot: FakeHubSpot,
) -> None:
    connection = make_connection(12345678)
    response = call(admin_client)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Account details of portal 12345678" in html
    assert "<code>GET /account-info/2026-03/details</code>" in html  # HubSpot's dated path
    assert [(m, p) for m, p, _ in fake_hubspot.requests] == [
        ("GET", "/account-info/2026-03/details")
    ]
    assert "US/Eastern" in html
    assert "HTTP 200" in html
    assert connection.access_token not in html


@pytest.mark.usefixtures("site")
def test_call_hubspot_shows_contacts(
    admin_client: Client, make_connection: Callable[..., HubSpotConnection]
) -> None:
    make_connection(12345678)
    response = call(admin_client, what="contacts")
    assert response.status_code == 200
    assert "GET /crm/objects/2026-03/contacts?limit=5" in response.content.decode()
    assert (
        "lovelace" not in response.content.decode().lower() or "Ada" in response.content.decode()
    )
    assert "ada@demo-company.example" in response.content.decode()


@pytest.mark.usefixtures("site")
def test_call_hubspot_refreshes_an_expired_token_first(
    admin_client: Client,
    make_connection: Callable[..., HubSpotConnection],
    fake_hubspot: FakeHubSpot,
) -> None:
    make_connection(12345678, expires_in=-60)
    assert call(admin_client).status_code == 200
    assert fake_hubspot.refresh_calls() == 1


@pytest.mark.usefixtures("site")
def test_unknown_choice_falls_back_to_account_details(
    admin_client: Client, make_connection: Callable[..., HubSpotConnection]
) -> None:
    make_connection(12345678)
    assert "Account details" in call(admin_client, what="../../admin").content.decode()


@pytest.mark.usefixtures("site")
@pytest.mark.parametrize("status", [NEEDS_REAUTH, "disconnected"])
def test_call_for_a_portal_that_is_not_connected_is_a_friendly_409(
    admin_client: Client, make_connection: Callable[..., HubSpotConnection], status: str
) -> None:
    make_connection(12345678, status=status)
    response = call(admin_client)
    assert response.status_code == 409
    html = response.content.decode()
    assert "is not connected (any more)" in html
    # Reconnect in place: a form posting the portal to the connect view.
    assert f'<form method="post" action="{reverse("hubspot_connect:connect")}">' in html
    assert '<input type="hidden" name="portal" value="12345678">' in html
    assert "csrfmiddlewaretoken" in html


@pytest.mark.usefixtures("site")
def test_call_for_an_unknown_portal_is_a_404(admin_client: Client) -> None:
    assert call(admin_client).status_code == 404


@pytest.mark.usefixtures("site")
def test_revoked_refresh_token_is_a_friendly_409(
    admin_client: Client,
    make_connection: Callable[..., HubSpotConnection],
    fake_hubspot: FakeHubSpot,
) -> None:
    make_connection(12345678, expires_in=-60)
    fake_hubspot.revoke_all()
    response = call(admin_client)
    assert response.status_code == 409
    assert HubSpotConnection.objects.get(portal_id=12345678).status == NEEDS_REAUTH


@pytest.mark.usefixtures("site")
def test_undecryptable_token_is_a_friendly_409(
    admin_client: Client, make_connection: Callable[..., HubSpotConnection]
) -> None:
    make_connection(12345678)
    with override_settings(FIELD_ENCRYPTION_KEY="ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="):
        response = call(admin_client)
    assert response.status_code == 409
    assert "FIELD_ENCRYPTION_KEY changed" in response.content.decode()


@pytest.mark.usefixtures("site")
@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "timeout"}, "could not be reached"),
        ({"kind": "reset"}, "could not be reached"),
        ({"kind": "status", "status": 503}, "HubSpot answered HTTP 503"),
        ({"kind": "non_json", "status": 502}, "HubSpot answered HTTP 502"),
    ],
)
def test_hubspot_failures_are_a_friendly_502(
    admin_client: Client,
    make_connection: Callable[..., HubSpotConnection],
    fake_hubspot: FakeHubSpot,
    fault: dict[str, Any],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_connection(12345678)
    monkeypatch.setattr(HubSpotSession, "backoff", 0.001)  # retries, without the waiting
    fake_hubspot.fail(endpoint="api", times=100, **fault)  # HubSpot keeps failing
    response = call(admin_client)
    assert response.status_code == 502
    assert message in response.content.decode()


@pytest.mark.usefixtures("site")
def test_refresh_failure_on_an_expired_token_is_a_friendly_502(
    admin_client: Client,
    make_connection: Callable[..., HubSpotConnection],
    fake_hubspot: FakeHubSpot,
) -> None:
    make_connection(12345678, expires_in=-60)
    fake_hubspot.fail("status", status=503, endpoint="token", times=5)
    response = call(admin_client)
    assert response.status_code == 502
    assert "could not be reached" in response.content.decode()


@pytest.mark.usefixtures("site")
def test_invalid_client_on_refresh_is_a_friendly_409(
    admin_client: Client,
    make_connection: Callable[..., HubSpotConnection],
) -> None:
    make_connection(12345678, expires_in=-60)
    with override_settings(HUBSPOT_CLIENT_SECRET="rotated-elsewhere"):
        response = call(admin_client)
    assert response.status_code == 409
    assert "refused to renew" in response.content.decode()


@pytest.mark.usefixtures("site")
def test_missing_scope_shows_hubspots_message(
    admin_client: Client, fake_hubspot: FakeHubSpot
) -> None:
    issued = fake_hubspot.issue_tokens(12345678, ["oauth"])
    HubSpotConnection.objects.create(
        portal_id=12345678,
        scopes=["oauth"],
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=None,
    )
    HubSpotConnection.objects.filter(portal_id=12345678).update(expires_at="2999-01-01T00:00:00Z")
    response = call(admin_client, what="contacts")
    assert response.status_code == 502
    html = response.content.decode()
    assert "HubSpot answered HTTP 403" in html
    assert "lacks crm.objects.contacts.read" in html


# -- who sees and calls which portal (portals_for) ------------------------------------------------


@pytest.fixture
def alice(db: None) -> User:
    """A user who may connect portals, but not see everyone's."""
    user = User.objects.create_user("alice", "alice@example.com", "pw")
    user.user_permissions.add(Permission.objects.get(codename="add_hubspotconnection"))
    return user


@pytest.fixture
def portals(
    alice: User, make_connection: Callable[..., HubSpotConnection]
) -> dict[str, HubSpotConnection]:
    bob = User.objects.create_user("bob", "bob@example.com", "pw")
    return {
        "alice": make_connection(12345678, connected_by=alice),
        "bob": make_connection(87654321, connected_by=bob),
        "nobody": make_connection(11111111),
    }


def without_csrf_tokens(html: bytes) -> bytes:
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]*"', b"", html)


def portal_ids(user: Any) -> set[int]:
    return set(portals_for(user).values_list("portal_id", flat=True))


def test_portals_for_a_user_are_the_ones_they_connected(
    alice: User, portals: dict[str, HubSpotConnection]
) -> None:
    assert portal_ids(alice) == {12345678}
    assert portal_ids(AnonymousUser()) == set()


def test_portals_for_a_user_with_the_view_permission_are_all(
    alice: User, portals: dict[str, HubSpotConnection]
) -> None:
    staff = User.objects.create_user("staff", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_hubspotconnection"))
    assert portal_ids(staff) == {12345678, 87654321, 11111111}
    superuser = User.objects.create_superuser("root", "root@example.com", "pw")
    assert portal_ids(superuser) == {12345678, 87654321, 11111111}
    # Staff status alone is not the permission.
    assert portal_ids(User.objects.create_user("clerk", is_staff=True)) == set()


def test_portals_for_never_joins_the_user_table(alice: User) -> None:
    """The users may live on another database than the connections."""
    sql = str(portals_for(alice).query)
    assert User._meta.db_table not in sql
    assert "connected_by_id" in sql


@pytest.mark.usefixtures("site")
def test_home_lists_only_the_users_portals(
    client: Client, alice: User, portals: dict[str, HubSpotConnection]
) -> None:
    client.force_login(alice)
    html = client.get("/").content.decode()
    assert "portal-12345678.hubspot.com" in html
    assert "87654321" not in html
    assert "11111111" not in html


@pytest.mark.usefixtures("site")
def test_calling_hubspot_as_someone_elses_portal_is_a_404(
    client: Client, alice: User, portals: dict[str, HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    client.force_login(alice)
    others = call(client, 87654321)
    unknown = call(client, 99999999)
    assert others.status_code == unknown.status_code == 404
    # Someone else's portal answers exactly as one that does not exist: nothing to probe.
    assert without_csrf_tokens(others.content) == without_csrf_tokens(unknown.content)
    assert call(client, 11111111).status_code == 404  # connected by nobody
    assert fake_hubspot.requests == []  # no token was used
    assert call(client, 12345678).status_code == 200  # their own


@pytest.mark.usefixtures("site")
def test_a_user_with_the_view_permission_may_call_any_portal(
    client: Client, portals: dict[str, HubSpotConnection]
) -> None:
    staff = User.objects.create_user("staff", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_hubspotconnection"))
    client.force_login(staff)
    assert call(client, 87654321).status_code == 200
    assert call(client, 11111111).status_code == 200


@pytest.mark.usefixtures("site")
def test_call_view_needs_post_and_login(client: Client, admin_client: Client, db: None) -> None:
    assert admin_client.get(reverse("call_hubspot", args=[1])).status_code == 405
    anonymous = Client()
    response = anonymous.post(reverse("call_hubspot", args=[1]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert Client(enforce_csrf_checks=True).post(
        reverse("call_hubspot", args=[1])
    ).status_code in (
        302,
        403,
    )


@pytest.mark.usefixtures("site")
def test_404_page_is_the_sites(client: Client, db: None) -> None:
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


@pytest.mark.usefixtures("site")
def test_package_pages_wear_the_site_layout(admin_client: Client) -> None:
    response = admin_client.get("/hubspot/callback/?code=x&state=forged")
    assert response.status_code == 400
    html = response.content.decode()
    assert "This connection link is not valid" in html
    assert "django-hubspot-connect <span>demo</span>" in html  # the site's header


def test_fake_urls_are_mounted_only_in_fake_mode() -> None:
    import example_project.urls as urls

    def routes() -> list[str]:
        return [str(pattern.pattern) for pattern in importlib.reload(urls).urlpatterns]

    try:
        with override_settings(HUBSPOT_FAKE=True):
            assert "fake-hubspot/" in routes()
        with override_settings(HUBSPOT_FAKE=False):
            assert "fake-hubspot/" not in routes()
    finally:
        importlib.reload(urls)


def test_access_log_hides_codes_and_states() -> None:
    line = '"GET /hubspot/callback/?code=na1-abc&state=xyz&x=1 HTTP/1.1" 302 0'
    assert redact(line) == (
        '"GET /hubspot/callback/?code=[redacted]&state=[redacted]&x=1 HTTP/1.1" 302 0'
    )
    record = logging.LogRecord(
        "django.server", logging.INFO, __file__, 1, '"%s" %s %s', (line[1:-8], 302, 0), None
    )
    assert RedactQuerySecrets().filter(record)
    assert "na1-abc" not in record.getMessage()


# -- demo.py ---------------------------------------------------------------------------------


def test_ensure_env_file_creates_secrets_once(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    assert demo.ensure_env_file(env_file) == ["FIELD_ENCRYPTION_KEY", "DJANGO_SECRET_KEY"]
    first = env_file.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = demo.read_env_file(env_file)
    from cryptography.fernet import Fernet

    Fernet(values["FIELD_ENCRYPTION_KEY"])  # a valid key
    assert len(values["DJANGO_SECRET_KEY"]) >= 50
    assert demo.ensure_env_file(env_file) == []
    assert env_file.read_text() == first


def test_ensure_env_file_fills_in_a_copied_env_example(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text((REPO / ".env.example").read_text())
    assert demo.ensure_env_file(env_file) == ["FIELD_ENCRYPTION_KEY", "DJANGO_SECRET_KEY"]
    text = env_file.read_text()
    assert "HUBSPOT_SCOPES=oauth crm.objects.contacts.read" in text  # the rest is kept
    assert text.count("FIELD_ENCRYPTION_KEY=") == 1
    assert demo.read_env_file(env_file)["FIELD_ENCRYPTION_KEY"]


def test_ensure_admin_creates_once_and_prints_the_same_password(tmp_path: Path, db: None) -> None:
    env_file = tmp_path / ".env"
    password = demo.ensure_admin(env_file)
    assert password
    admin = User.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password(password)
    assert demo.read_env_file(env_file)[demo.PASSWORD_KEY] == password
    assert demo.ensure_admin(env_file) == password
    assert User.objects.filter(username="admin").count() == 1
    # Someone changed the password: left alone, and not printed.
    admin.set_password("changed-by-hand")
    admin.save()
    assert demo.ensure_admin(env_file) is None
    assert User.objects.get(username="admin").check_password("changed-by-hand")


def test_passwords_are_random(tmp_path: Path, db: None) -> None:
    first = demo.ensure_admin(tmp_path / "a.env", username="one")
    second = demo.ensure_admin(tmp_path / "b.env", username="two")
    assert first
    assert second
    assert first != second


def test_runserver_argv() -> None:
    argv = demo.runserver_argv({})
    assert argv[1:] == [str(REPO / "manage.py"), "runserver", "127.0.0.1:8000"]
    assert demo.runserver_argv({"DEMO_HOST": "::1", "DEMO_PORT": "9000", "DEMO_NORELOAD": "1"})[
        2:
    ] == ["runserver", "[::1]:9000", "--noreload"]


def test_banner() -> None:
    info = {
        "env_file": Path("/x/.env"),
        "generated": ["FIELD_ENCRYPTION_KEY"],
        "username": "admin",
        "password": "pw-123",
        "url": "http://127.0.0.1:8000/",
        "fake": True,
    }
    text = demo.banner(info, "127.0.0.1")
    assert "Wrote FIELD_ENCRYPTION_KEY to /x/.env" in text
    assert "fake HubSpot" in text
    assert "Log in as admin / pw-123" in text
    assert "anyone who can reach it" not in text
    text = demo.banner(dict(info, password=None, generated=[], fake=False), "0.0.0.0")  # noqa: S104
    assert "changepassword admin" in text
    assert "real HubSpot" in text
    assert "anyone who can reach it" in text


def test_main_prints_then_becomes_runserver(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    info = {
        "env_file": Path("/x/.env"),
        "generated": [],
        "username": "admin",
        "password": "pw-123",
        "url": "http://127.0.0.1:8000/",
        "fake": True,
    }
    execs: list[list[str]] = []
    monkeypatch.setattr(demo, "prepare", lambda: info)
    monkeypatch.setattr(demo.os, "chdir", lambda path: None)
    monkeypatch.setattr(demo.os, "execv", lambda path, argv: execs.append(argv))
    demo.main()
    assert "Log in as admin / pw-123" in capsys.readouterr().out
    assert len(execs) == 1
    assert execs[0][-1].endswith(":8000")


@pytest.mark.slow
def test_prepare_twice_against_a_fresh_sqlite_database(tmp_path: Path) -> None:
    """``make demo`` run twice: same .env, same admin, same password, no error."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HUBSPOT_", "DJANGO_", "DEMO_")) and k != "DATABASE_URL"
    }
    env.update(
        DEMO_ENV_FILE=str(tmp_path / ".env"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        PYTHONDONTWRITEBYTECODE="1",
    )
    script = (
        "import json; from example_project import demo; info = demo.prepare(); "
        "info['env_file'] = str(info['env_file']); print(json.dumps(info))"
    )
    runs = []
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["generated"] == ["FIELD_ENCRYPTION_KEY", "DJANGO_SECRET_KEY"]
    assert second["generated"] == []
    assert first["password"]
    assert second["password"] == first["password"]
    assert first["url"] == "http://127.0.0.1:8000/"
    assert first["fake"] is True
    assert (tmp_path / "demo.sqlite3").exists()
