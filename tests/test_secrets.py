"""Secrets at rest, in transit and in logs.

Tokens must be unreadable in the raw database; a wrong or missing key must fail loudly
instead of handing out ciphertext; and no token, client secret or authorization code may
reach a log record, a page, a Django message, an exception or a URL, with every logger
at DEBUG.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib import admin
from django.contrib.messages import get_messages
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from hubspot_connect.batch import refresh_expiring_tokens
from hubspot_connect.exceptions import (
    HubSpotConnectError,
    TokenDecryptionError,
)
from hubspot_connect.models import HubSpotConnection, HubSpotConnectionEvent
from hubspot_connect.testing import FakeHubSpot
from hubspot_connect.tokens import api_session, get_access_token
from tests.hardening.recorder import HandleRecorder
from tests.hardening.server import serve

PACKAGE = Path(__file__).resolve().parent.parent / "hubspot_connect"
TABLE = HubSpotConnection._meta.db_table
OTHER_KEY = Fernet.generate_key().decode()


def all_issued(fake: FakeHubSpot) -> set[str]:
    """Every access and refresh token the fake ever issued."""
    with fake.store.transaction() as data:
        return set(data.get("access_tokens", {})) | set(data.get("refresh_tokens", {}))


def fragments(secret: str, public: tuple[str, ...] = (), size: int = 12) -> set[str]:
    """The secret and each ``size``-character slice of it not also part of a public value."""
    pieces = {secret}
    for start in range(max(0, len(secret) - size + 1)):
        piece = secret[start : start + size]
        if not any(piece in value for value in public):
            pieces.add(piece)
    return pieces


def raw_table() -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(TABLE)}")  # noqa: S608
        return "\n".join(str(value) for row in cursor.fetchall() for value in row)


# -- at rest -------------------------------------------------------------------------------------


def test_tokens_are_unreadable_in_the_raw_database(
    connect_portal_via_views: Callable[..., Any],
    make_connection: Callable[..., HubSpotConnection],
    fake_hubspot: FakeHubSpot,
) -> None:
    assert connect_portal_via_views(portal_id=12345678).status_code == 302
    make_connection(87654321)
    assert get_access_token(12345678)
    assert HubSpotConnection.objects.get(portal_id=87654321).refresh(force=True)
    stored = {
        token
        for row in HubSpotConnection.objects.all()
        for token in (row.access_token, row.refresh_token)
    }
    assert len(stored) == 4
    raw = raw_table()
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_data FROM django_session")
        raw_sessions = "\n".join(row[0] for row in cursor.fetchall())
    assert raw_sessions, "the flow used a database session; the test must see it"
    for token in stored | all_issued(fake_hubspot):
        for piece in fragments(token):
            assert piece not in raw
            assert piece not in raw_sessions
    # What is stored is Fernet ciphertext under the configured key.
    fernet = Fernet(settings.FIELD_ENCRYPTION_KEY)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT access_token, refresh_token FROM {connection.ops.quote_name(TABLE)}"  # noqa: S608
        )
        decrypted = {fernet.decrypt(value.encode()).decode() for row in cursor for value in row}
    assert decrypted == stored


@pytest.fixture
def stored(make_connection: Callable[..., HubSpotConnection]) -> HubSpotConnection:
    # Due for refresh, so every reader would try to use (and send) the refresh token.
    return make_connection(12345678, expires_in=-60)


@pytest.fixture
def recorder(fake_hubspot: FakeHubSpot) -> HandleRecorder:
    return HandleRecorder(fake_hubspot).install()


BAD_KEYS = [
    pytest.param({"FIELD_ENCRYPTION_KEY": OTHER_KEY}, None, id="wrong-key"),
    pytest.param({"FIELD_ENCRYPTION_KEY": [OTHER_KEY]}, None, id="wrong-key-list"),
    pytest.param({"FIELD_ENCRYPTION_KEY": None}, "hubspot_connect.E008", id="missing-key"),
    pytest.param({"FIELD_ENCRYPTION_KEY": ""}, "hubspot_connect.E008", id="empty-key"),
    pytest.param({"FIELD_ENCRYPTION_KEY": "not-a-fernet-key"}, "hubspot_connect.E009", id="bad"),
]


@pytest.mark.parametrize(("overrides", "check_id"), BAD_KEYS)
def test_a_wrong_or_missing_key_fails_loudly_and_sends_nothing(
    overrides: dict[str, Any],
    check_id: str | None,
    stored: HubSpotConnection,
    fake_hubspot: FakeHubSpot,
    recorder: HandleRecorder,
) -> None:
    with override_settings(**overrides):
        if check_id:
            assert check_id in {message.id for message in run_checks()}
        with pytest.raises(TokenDecryptionError):
            HubSpotConnection.objects.get(pk=stored.pk)
        with pytest.raises(TokenDecryptionError):
            get_access_token(stored.portal_id)
        with pytest.raises(TokenDecryptionError):
            api_session(stored.portal_id).get("/crm/v3/objects/contacts")
        summary = refresh_expiring_tokens(concurrency=1, sleep=lambda seconds: None)
        assert summary.failed == 1
        assert summary.refreshed == 0
    assert recorder.seen == []
    assert fake_hubspot.requests == []
    row = HubSpotConnection.objects.get(pk=stored.pk)
    assert (row.access_token, row.refresh_token) == (stored.access_token, stored.refresh_token)


def test_the_refresh_command_reports_undecryptable_rows(
    stored: HubSpotConnection, recorder: HandleRecorder
) -> None:
    stdout, stderr = StringIO(), StringIO()
    with override_settings(FIELD_ENCRYPTION_KEY=OTHER_KEY), pytest.raises(SystemExit) as exit_:
        call_command("refresh_hubspot_tokens", "--concurrency", "1", stdout=stdout, stderr=stderr)
    assert exit_.value.code == 1
    assert "failed 1" in stdout.getvalue()
    assert recorder.seen == []
    raw = raw_table()
    for line in (stdout.getvalue() + stderr.getvalue()).splitlines():
        for word in re.findall(r"gAAAAA[\w=-]{20,}", line):
            assert word not in raw, "the command printed stored ciphertext"


def test_an_open_session_whose_key_changes_never_sends_ciphertext(
    stored: HubSpotConnection, fake_hubspot: FakeHubSpot, recorder: HandleRecorder
) -> None:
    session = api_session(stored.portal_id)
    with (
        override_settings(FIELD_ENCRYPTION_KEY=OTHER_KEY),
        contextlib.suppress(TokenDecryptionError),
    ):
        session.get("/crm/v3/objects/contacts")
    issued = all_issued(fake_hubspot)
    for bearer in recorder.bearer_tokens():
        assert bearer in issued, "a bearer token HubSpot never issued was sent"
        assert not bearer.startswith("gAAAAA")


def test_saving_without_a_key_writes_nothing(db: None) -> None:
    with (
        override_settings(FIELD_ENCRYPTION_KEY=None),
        pytest.raises(ImproperlyConfigured) as error,
        transaction.atomic(),
    ):
        HubSpotConnection.objects.create(portal_id=1, access_token="Cplain", refresh_token="r")
    assert "Cplain" not in str(error.value)
    assert not HubSpotConnection.objects.exists()


# -- in transit and in logs ----------------------------------------------------------------------


class Collect(logging.Handler):
    """Formats every record fully (message, args, exception) the way a real handler would.

    ``texts`` holds what this app and the libraries log; ``django_reprs`` what Django adds
    of its own: the request ``repr`` (its URL carries the code of a callback) and the
    template engine's DEBUG lookups, which print the whole template context.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.django_reprs: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        formatted = self.format(record)  # message % args, plus the traceback if any
        if record.name == "django.template":
            self.django_reprs.append(formatted)
            self.texts.append(record.getMessage())
        else:
            self.texts.append(formatted)
            self.texts.append(repr(record.args))
        if getattr(record, "request", None) is not None:
            self.django_reprs.append(repr(record.request))  # type: ignore[attr-defined]


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> Iterator[Collect]:
    handler = Collect()
    root = logging.getLogger()
    names = ["", "requests", "urllib3", "hubspot_connect", "django", "django.request"]
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        caplog.set_level(logging.DEBUG, logger=name or None)
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_no_secret_in_logs_pages_messages_exceptions_or_urls(
    connector_client: Client,
    fake_hubspot: FakeHubSpot,
    every_log: Collect,
    caplog: pytest.LogCaptureFixture,
    django_user_model: Any,
) -> None:
    texts: list[str] = []
    codes: list[str] = []
    errors: list[BaseException] = []

    def visit(client: Client, url: str, **kwargs: Any) -> Any:
        response = (
            client.get(url, **kwargs) if not kwargs.get("data") else client.post(url, **kwargs)
        )
        texts.append(response.content.decode("utf-8", "replace"))
        texts.append(str(response.get("Location", "")))
        texts.extend(str(message) for message in get_messages(response.wsgi_request))
        return response

    def consent(client: Client, next_url: str = "/after/", **how: Any) -> str:
        start = visit(client, reverse("hubspot_connect:connect"), data={"next": next_url})
        assert start.status_code == 302
        callback = fake_hubspot.consent(start["Location"], **how)
        code = dict(parse_qsl(urlsplit(callback).query)).get("code")
        if code:
            codes.append(code)
        return callback

    # Connect two portals through the views, and every way a callback can fail.
    assert visit(connector_client, consent(connector_client)).status_code == 302
    assert (
        visit(connector_client, consent(connector_client, portal_id=87654321)).status_code == 302
    )
    assert visit(connector_client, consent(connector_client, approve=False)).status_code == 400
    used = consent(connector_client)
    assert visit(connector_client, used).status_code == 302
    replayed = consent(connector_client)
    state = dict(parse_qsl(urlsplit(replayed).query))["state"]
    reused_code = dict(parse_qsl(urlsplit(used).query))["code"]
    replay = f"{reverse('hubspot_connect:callback')}?state={state}&code={reused_code}"
    assert visit(connector_client, replay).status_code == 400  # HubSpot: code already used
    fake_hubspot.fail("status", status=503)
    assert visit(connector_client, consent(connector_client)).status_code == 502
    fake_hubspot.fail("truncated")
    assert visit(connector_client, consent(connector_client)).status_code == 502

    # Read, refresh, use.
    assert get_access_token(12345678)
    HubSpotConnection.objects.update(expires_at=timezone.now() + timedelta(seconds=10))
    assert get_access_token(12345678)
    out = StringIO()
    call_command(
        "refresh_hubspot_tokens",
        "--force",
        "--concurrency",
        "1",
        "-v",
        "3",
        stdout=out,
        stderr=out,
    )
    texts.append(out.getvalue())
    session = api_session(12345678)
    assert session.get("/crm/v3/objects/contacts").status_code == 200
    fake_hubspot.expire_access_tokens()  # the next call gets a 401, refreshes and retries
    assert session.get("/account-info/v3/details").status_code == 200

    # Failures that carry a message: a dead refresh token, an outage on an expired token.
    fake_hubspot.revoke_all(87654321)
    HubSpotConnection.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    for portal in (87654321, 12345678, 999):
        if portal == 12345678:
            fake_hubspot.fail("status", status=500, times=10)
        try:
            get_access_token(portal)
        except HubSpotConnectError as exc:
            errors.append(exc)
    assert len(errors) == 3
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit):
        call_command(
            "refresh_hubspot_tokens", "--retries=0", "--concurrency=1", stdout=out, stderr=err
        )
    texts.extend([out.getvalue(), err.getvalue()])

    # The admin, if it is there (it is being written alongside this test).
    if admin.site.is_registered(HubSpotConnection):
        staff = Client()
        staff.force_login(django_user_model.objects.create_superuser("boss", "b@x.example", "pw"))
        changelist = reverse("admin:hubspot_connect_hubspotconnection_changelist")
        assert visit(staff, changelist).status_code == 200
        for row in HubSpotConnection.objects.all():
            change = reverse("admin:hubspot_connect_hubspotconnection_change", args=[row.pk])
            assert visit(staff, change).status_code == 200
        pks = [str(pk) for pk in HubSpotConnection.objects.values_list("pk", flat=True)]
        data = {"action": "refresh_tokens", "_selected_action": pks}
        visit(staff, changelist, data=data, follow=True)

    # Disconnect (revokes at HubSpot).
    HubSpotConnection.objects.get(portal_id=12345678).disconnect()
    for row in HubSpotConnection.objects.all():
        texts.extend([str(row), repr(row), row.last_error])

    texts.extend(every_log.texts)
    texts.extend(record.getMessage() for record in caplog.records)
    for exc in errors:
        texts.extend([str(exc), repr(exc), repr(exc.args), str(exc.__cause__ or "")])

    client_id, secret = settings.HUBSPOT_CLIENT_ID, settings.HUBSPOT_CLIENT_SECRET
    secrets = {secret} | set(codes) | all_issued(fake_hubspot)
    assert len(codes) >= 5
    assert len(every_log.texts) > 20, "logging was not captured; the test would prove nothing"
    public = (client_id, "https://testserver/hubspot/callback/")

    def leaks(values: set[str], haystack: str) -> list[str]:
        return sorted(
            {piece for value in values for piece in fragments(value, public) if piece in haystack}
        )

    assert leaks(secrets, "\n".join(texts)) == []
    # Django's own reprs of the callback request show its URL, so its code (inherent to
    # the code grant; useless without the client secret). Never a token or the secret.
    assert leaks(secrets, "\n".join(every_log.django_reprs)) == []

    # In transit: TLS verification on, a timeout on every call, no secret in any URL.
    calls = list(fake_hubspot._mock.calls)
    assert len(calls) >= 15
    assert any(secret in str(call.request.body) for call in calls), "the secret travels in bodies"
    for call in calls:
        kwargs = call.request.req_kwargs
        assert kwargs.get("verify") not in (False, None, ""), call.request.url
        assert kwargs.get("timeout") is not None, call.request.url
        for value in secrets:
            assert value not in call.request.url
    start = connector_client.post(reverse("hubspot_connect:connect"))
    assert secret not in start["Location"]
    assert f"client_id={client_id}" in start["Location"]


def test_callback_pages_log_no_code_even_at_template_debug(
    connector_client: Client, fake_hubspot: FakeHubSpot, every_log: Collect
) -> None:
    start = connector_client.post(reverse("hubspot_connect:connect"))
    callback = fake_hubspot.approve(start["Location"])
    code = dict(parse_qsl(urlsplit(callback).query))["code"]
    fake_hubspot.fail("status", status=503)  # the code stays valid: HubSpot never saw it
    assert connector_client.get(callback).status_code == 502
    # The page is logged by the app (without the code) and marked as logged, so neither
    # django.request (nor mail_admins behind it) nor the template engine sees the request.
    assert not [text for text in every_log.django_reprs if code in text]
    assert not [text for text in every_log.texts if code in text]


def test_refresh_over_real_http_logs_no_secret(
    db: None, every_log: Collect, caplog: pytest.LogCaptureFixture
) -> None:
    """Through urllib3 (not ``responses``), whose DEBUG log names every request line."""
    fake = FakeHubSpot()
    with serve(fake) as server, override_settings(HUBSPOT_API_BASE_URL=server.url):
        issued = fake.issue_tokens(12345678, ["oauth", "crm.objects.contacts.read"])
        HubSpotConnection.objects.create(
            portal_id=12345678,
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            expires_at=timezone.now(),
        )
        token = get_access_token(12345678)
        assert api_session(12345678).get("/crm/v3/objects/contacts").status_code == 200
        HubSpotConnection.objects.get(portal_id=12345678).disconnect()
    assert fake.is_issued_access_token(token)
    assert any("urllib3" in text for text in every_log.texts), "urllib3 did not log"
    haystack = "\n".join(every_log.texts + [r.getMessage() for r in caplog.records])
    for value in all_issued(fake) | {settings.HUBSPOT_CLIENT_SECRET}:
        assert value not in haystack


def test_package_source_never_disables_tls_verification() -> None:
    pattern = re.compile(
        r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False|disable_warnings"
        r"|PYTHONHTTPSVERIFY|_create_unverified_context"
    )
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
    assert importlib.util.find_spec("hubspot_connect.client") is not None


ECHOES = [
    pytest.param(400, "invalid_grant", id="invalid-grant"),
    pytest.param(400, "invalid_request", id="invalid-request"),
    pytest.param(401, "invalid_client", id="invalid-client"),
    pytest.param(403, "", id="forbidden"),
    pytest.param(500, "", id="server-error"),
    pytest.param(429, "", id="rate-limited"),
]


@pytest.mark.parametrize(("status", "error"), ECHOES)
def test_errors_that_echo_the_request_never_carry_its_secrets(
    status: int, error: str, db: None
) -> None:
    """A HubSpot (or proxy) error body that repeats the form it got, in every field."""
    import json

    import responses

    from hubspot_connect.client import HubSpotOAuthClient

    def echo(request: Any) -> tuple[int, dict[str, str], str]:
        form = dict(parse_qsl(request.body))
        said = " ".join(f"{name}={value}" for name, value in form.items())
        body = {
            "error": error or said,
            "error_description": said,
            "message": said,
            "status": said,
            "category": said,
            "correlationId": "c0ffee",
        }
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    access, refresh = "C" + "x" * 150, "na1-11111111-2222-3333-4444-555555555555"
    row = HubSpotConnection.objects.create(
        portal_id=4242, access_token=access, refresh_token=refresh, expires_at=timezone.now()
    )
    secret = settings.HUBSPOT_CLIENT_SECRET
    texts: list[str] = []
    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, re.compile(r".*/oauth/2026-03/token.*"), callback=echo)
        for attempt in (
            lambda: get_access_token(4242),
            lambda: HubSpotOAuthClient().exchange_code("na1-code-77777777", redirect_uri="x"),
            lambda: HubSpotOAuthClient().introspect(access),
            lambda: HubSpotOAuthClient().revoke(refresh),
        ):
            with pytest.raises(HubSpotConnectError) as caught:
                attempt()
            exc = caught.value
            texts.extend([str(exc), repr(exc), repr(vars(exc))])
        assert all(secret in str(call.request.body) for call in mock.calls), "nothing echoed"
    row.refresh_from_db()
    texts.append(row.last_error)
    events = list(HubSpotConnectionEvent.objects.values_list("message", flat=True))
    texts.extend(events)
    # invalid_client is the app's problem, not the portal's: the row stays as it was.
    assert row.last_error or error == "invalid_client", "the failure was recorded"
    for value in (access, refresh, secret, "na1-code-77777777"):
        assert not [text for text in texts if value in text], value
