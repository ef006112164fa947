"""EncryptedTokenField: unreadable at rest, loud when the key is wrong or missing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.db import connection as db_connection
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from hubspot_connect.exceptions import TokenDecryptionError
from hubspot_connect.fields import decrypt, encrypt, get_fernet
from hubspot_connect.models import HubSpotConnection

pytestmark = pytest.mark.django_db
KEY = "Hq4vVtI1WmQ0WvW8u5Jk2R9dNnS3wYQm9oQ0ZlZs7dE="  # tests/settings.py
NEW_KEY = Fernet.generate_key().decode()
ACCESS = "CJTest" + "a1b2c3" * 45
REFRESH = "na1-1c2d3e4f-refresh"


def create(**fields: object) -> HubSpotConnection:
    values: dict[str, object] = {
        "portal_id": 12345678,
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_at": timezone.now() + timedelta(minutes=30),
    }
    values.update(fields)
    return HubSpotConnection.objects.create(**values)


def raw_tokens(pk: int) -> tuple[str, str]:
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, refresh_token FROM hubspot_connect_hubspotconnection "
            "WHERE id = %s",
            [pk],
        )
        return cursor.fetchone()


def test_tokens_are_unreadable_in_the_raw_row():
    row = create()
    raw_access, raw_refresh = raw_tokens(row.pk)
    assert ACCESS not in raw_access
    assert REFRESH not in raw_refresh
    assert ACCESS[:20] not in raw_access
    fernet = Fernet(KEY)
    assert fernet.decrypt(raw_access.encode()).decode() == ACCESS
    assert fernet.decrypt(raw_refresh.encode()).decode() == REFRESH


def test_tokens_read_back_as_plaintext():
    create()
    row = HubSpotConnection.objects.get()
    assert (row.access_token, row.refresh_token) == (ACCESS, REFRESH)


def test_the_same_token_encrypts_differently_each_time():
    assert encrypt(ACCESS) != encrypt(ACCESS)
    assert decrypt(encrypt(ACCESS)) == ACCESS


def test_empty_tokens_are_stored_as_empty():
    row = create(access_token="", refresh_token="")
    assert raw_tokens(row.pk) == ("", "")
    assert HubSpotConnection.objects.get().access_token == ""


def test_a_wrong_key_raises_on_read_and_never_returns_ciphertext():
    create()
    with (
        override_settings(FIELD_ENCRYPTION_KEY=NEW_KEY),
        pytest.raises(TokenDecryptionError, match="FIELD_ENCRYPTION_KEY") as caught,
    ):
        HubSpotConnection.objects.get()
    assert ACCESS not in str(caught.value)
    # Rows can still be listed without touching the tokens.
    with override_settings(FIELD_ENCRYPTION_KEY=NEW_KEY):
        assert HubSpotConnection.objects.defer("access_token", "refresh_token").get()


def test_a_tampered_value_raises_on_read():
    row = create()
    with db_connection.cursor() as cursor:
        cursor.execute(
            "UPDATE hubspot_connect_hubspotconnection SET access_token = %s WHERE id = %s",
            ["gAAAAA-not-really-fernet", row.pk],
        )
    with pytest.raises(TokenDecryptionError):
        HubSpotConnection.objects.get()


def test_a_plaintext_value_from_before_encryption_raises_on_read():
    row = create()
    with db_connection.cursor() as cursor:
        cursor.execute(
            "UPDATE hubspot_connect_hubspotconnection SET refresh_token = %s WHERE id = %s",
            [REFRESH, row.pk],
        )
    with pytest.raises(TokenDecryptionError) as caught:
        HubSpotConnection.objects.get()
    assert REFRESH not in str(caught.value)


@pytest.mark.parametrize("missing", [None, "", []])
def test_a_missing_key_raises_on_read_and_on_write(missing):
    create()
    with override_settings(FIELD_ENCRYPTION_KEY=missing):
        with pytest.raises(TokenDecryptionError, match="FIELD_ENCRYPTION_KEY is not set"):
            HubSpotConnection.objects.get()
        with (
            pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY"),
            transaction.atomic(),
        ):
            create(portal_id=2)
    assert HubSpotConnection.objects.count() == 1


def test_an_invalid_key_raises_improperly_configured():
    with override_settings(FIELD_ENCRYPTION_KEY="not-a-key"):
        with pytest.raises(ImproperlyConfigured, match="Fernet key"):
            get_fernet()
        with pytest.raises(TokenDecryptionError, match="Fernet key"):
            decrypt("gAAAAA-anything")


def test_key_rotation_old_key_decrypts_first_key_encrypts():
    old_row = create()
    with override_settings(FIELD_ENCRYPTION_KEY=[NEW_KEY, KEY]):
        row = HubSpotConnection.objects.get()
        assert row.access_token == ACCESS
        row.save()  # re-encrypts with the first key
        new_row = create(portal_id=87654321)
    for pk in (old_row.pk, new_row.pk):
        raw_access, _ = raw_tokens(pk)
        assert Fernet(NEW_KEY).decrypt(raw_access.encode()).decode() == ACCESS
    # Once every row is re-encrypted, the old key can go.
    with override_settings(FIELD_ENCRYPTION_KEY=NEW_KEY):
        assert [r.access_token for r in HubSpotConnection.objects.all()] == [ACCESS, ACCESS]


def test_bytes_keys_work():
    with override_settings(FIELD_ENCRYPTION_KEY=KEY.encode()):
        row = create()
    assert HubSpotConnection.objects.get(pk=row.pk).access_token == ACCESS
