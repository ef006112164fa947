"""``manage.py rotate_hubspot_token_key``: re-encrypt under the first key, drop the old one."""

from __future__ import annotations

import re
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from hubspot_connect.models import HubSpotConnection, HubSpotConnectionEvent
from hubspot_connect.testing import FakeHubSpot
from hubspot_connect.tokens import api_session, get_access_token

OLD = settings.FIELD_ENCRYPTION_KEY
NEW = Fernet.generate_key().decode()
STRANGER = Fernet.generate_key().decode()
TABLE = HubSpotConnection._meta.db_table
COUNTS = re.compile(r"re-encrypted (\d+), already current (\d+), failed (\d+)")


def raw() -> dict[int, tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, access_token, refresh_token FROM {connection.ops.quote_name(TABLE)}"  # noqa: S608
        )
        return {pk: (access or "", refresh or "") for pk, access, refresh in cursor.fetchall()}


def rotate() -> tuple[tuple[int, int, int], int]:
    """Run the command; ((rotated, current, failed), exit status)."""
    out = StringIO()
    status = 0
    try:
        call_command("rotate_hubspot_token_key", stdout=out, stderr=out)
    except SystemExit as exc:
        status = int(exc.code or 0)
    found = COUNTS.search(out.getvalue())
    assert found, out.getvalue()
    rotated, current, failed = map(int, found.groups())
    return (rotated, current, failed), status


def opens(key: str, value: str) -> str | None:
    try:
        return Fernet(key).decrypt(value.encode()).decode()
    except InvalidToken:
        return None


@pytest.fixture
def portals(
    make_connection: Callable[..., HubSpotConnection],
) -> dict[int, tuple[str, str]]:
    """Three live connections and one disconnected (no tokens), all under the old key."""
    rows = [make_connection(portal) for portal in (101, 102, 103)]
    gone = make_connection(104)
    gone.disconnect(revoke=False)
    return {row.pk: (row.access_token, row.refresh_token) for row in rows} | {gone.pk: ("", "")}


def test_rotation_moves_every_token_to_the_first_key(
    portals: dict[int, tuple[str, str]], fake_hubspot: FakeHubSpot
) -> None:
    before = raw()
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]):
        assert rotate() == ((3, 1, 0), 0)
        after = raw()
        for pk, tokens in portals.items():
            for stored, token, old_stored in zip(after[pk], tokens, before[pk], strict=True):
                if not token:
                    assert stored == ""
                    continue
                assert stored != old_stored
                assert opens(NEW, stored) == token
                assert opens(OLD, stored) is None
        rotated = HubSpotConnectionEvent.objects.filter(kind="key_rotated")
        assert sorted(rotated.values_list("connection_id", flat=True)) == sorted(
            pk for pk, tokens in portals.items() if tokens[0]
        )
        assert rotated.first().message == (  # type: ignore[union-attr]
            "Tokens re-encrypted with the first key of FIELD_ENCRYPTION_KEY."
        )
        # Idempotent: nothing left to do, nothing rewritten, nothing more recorded.
        assert rotate() == ((0, 4, 0), 0)
        assert raw() == after
        assert rotated.count() == 3
    # The old key can go now.
    with override_settings(FIELD_ENCRYPTION_KEY=NEW):
        for row in HubSpotConnection.objects.all():
            assert (row.access_token, row.refresh_token) == portals[row.pk]
        live = HubSpotConnection.objects.get(portal_id=101)
        assert get_access_token(101) == live.access_token
        assert api_session(101).get("/crm/v3/objects/contacts").status_code == 200
    assert fake_hubspot.refresh_calls() == 0


def test_rotation_keeps_everything_but_the_ciphertext(portals: dict[int, Any]) -> None:
    fields = ["pk", "portal_id", "status", "expires_at", "scopes", "token_type", "updated_at"]
    before = list(HubSpotConnection.objects.order_by("pk").values(*fields))
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]):
        rotate()
        assert list(HubSpotConnection.objects.order_by("pk").values(*fields)) == before


def test_a_row_under_an_unknown_key_is_reported_not_corrupted(
    portals: dict[int, tuple[str, str]], fake_hubspot: FakeHubSpot
) -> None:
    with override_settings(FIELD_ENCRYPTION_KEY=STRANGER):
        issued = fake_hubspot.issue_tokens(105)
        stranger = HubSpotConnection.objects.create(
            portal_id=105,
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            expires_at=timezone.now(),
        )
    stranger_raw = raw()[stranger.pk]
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]):
        assert rotate() == ((3, 1, 1), 1)
        assert raw()[stranger.pk] == stranger_raw
        # A second run still reports it, and still does not touch it.
        assert rotate() == ((0, 4, 1), 1)
    assert raw()[stranger.pk] == stranger_raw
    assert opens(STRANGER, stranger_raw[1]) == issued["refresh_token"]


@pytest.mark.parametrize("keys", [None, "", "not-a-fernet-key", [NEW, "not-a-key"]])
def test_rotation_without_a_usable_key_list_changes_nothing(
    portals: dict[int, tuple[str, str]], keys: Any
) -> None:
    before = raw()
    with (
        override_settings(FIELD_ENCRYPTION_KEY=keys),
        pytest.raises((ImproperlyConfigured, CommandError)),
    ):
        call_command("rotate_hubspot_token_key", stdout=StringIO(), stderr=StringIO())
    assert raw() == before


def test_a_refresh_during_rotation_is_not_undone(
    make_connection: Callable[..., HubSpotConnection], fake_hubspot: FakeHubSpot
) -> None:
    fake_hubspot.rotate_refresh_tokens = True
    row = make_connection(101)
    state = {"read": False, "busy": False, "refreshed": False}

    def between_read_and_write(
        execute: Any, sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        text = sql.lstrip().upper()
        if not state["busy"] and state["read"] and text.startswith("UPDATE"):
            # The rotation read the row and is about to write: a cron refresh gets in first.
            state["busy"] = True
            try:
                state["refreshed"] = HubSpotConnection.objects.get(pk=row.pk).refresh(force=True)
            finally:
                state["busy"] = False
        result = execute(sql, params, many, context)
        if text.startswith("SELECT") and "REFRESH_TOKEN" in text and " IN (" in text:
            state["read"] = True
        return result

    with (
        override_settings(FIELD_ENCRYPTION_KEY=[NEW, OLD]),
        connection.execute_wrapper(between_read_and_write),
    ):
        (rotated, current, failed), status = rotate()
        assert state["refreshed"], "the interleaving did not happen; the test proves nothing"
        # The refresh already stored its tokens under the first key: nothing to redo.
        assert (rotated + current, failed, status) == (1, 0, 0)
        stored = HubSpotConnection.objects.get(pk=row.pk)
    assert fake_hubspot.is_live_refresh_token(stored.refresh_token)
    assert stored.access_token != row.access_token
