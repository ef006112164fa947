"""Re-encrypt every stored token with the first key of FIELD_ENCRYPTION_KEY."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast
from django.utils.translation import gettext

from . import events
from .conf import app_settings
from .db import write_alias
from .exceptions import TokenDecryptionError
from .fields import decrypt, get_fernet
from .models import EventKind, HubSpotConnection

logger = logging.getLogger("hubspot_connect")


@dataclass
class RotationResult:
    rotated: int = 0
    current: int = 0
    failed: int = 0


def _raw_tokens(rows: QuerySet[HubSpotConnection]) -> list[tuple[int, str, str]]:
    """The stored ciphertext of some rows, read past the field's decryption."""
    raw = rows.annotate(
        raw_access=Cast("access_token", TextField()),
        raw_refresh=Cast("refresh_token", TextField()),
    )
    return [
        (pk, access or "", refresh or "")
        for pk, access, refresh in raw.values_list("pk", "raw_access", "raw_refresh")
    ]


def rotate_encryption_key(chunk_size: int = 200) -> RotationResult:
    """Re-encrypt every connection's tokens with the first key of FIELD_ENCRYPTION_KEY.

    Idempotent: rows whose ciphertext the first key already opens are left alone. Reads
    and writes go to the database the router picks for writing the connections. Each
    re-encrypted connection gets a ``key_rotated`` event (one INSERT per chunk).
    """
    get_fernet()  # a missing or malformed key fails here, before anything is read
    first = Fernet(app_settings.ENCRYPTION_KEYS[0])

    def current(value: str) -> bool:
        try:
            first.decrypt(value.encode())
        except InvalidToken:
            return False
        return True

    result = RotationResult()
    alias = write_alias()
    rows = HubSpotConnection.objects.using(alias)
    pks = list(rows.order_by("pk").values_list("pk", flat=True))
    message = gettext("Tokens re-encrypted with the first key of FIELD_ENCRYPTION_KEY.")
    for start in range(0, len(pks), chunk_size):
        rotated: list[int] = []
        for pk, access, refresh in _raw_tokens(
            rows.filter(pk__in=pks[start : start + chunk_size])
        ):
            if all(not value or current(value) for value in (access, refresh)):
                result.current += 1
                continue
            try:
                values = {
                    "access_token": decrypt(access) if access else "",
                    "refresh_token": decrypt(refresh) if refresh else "",
                }
            except TokenDecryptionError:
                logger.error("Connection %s: its tokens decrypt with no configured key", pk)
                result.failed += 1
                continue
            # Only if the ciphertext is still what we read (a lookup on this field compares
            # the stored text as is): a refresh meanwhile stored new tokens, already
            # encrypted with the first key, which must not be overwritten with old ones.
            unchanged = rows.filter(pk=pk, access_token=access, refresh_token=refresh)
            if unchanged.update(**values):
                result.rotated += 1
                rotated.append(pk)
            else:
                result.current += 1
        events.record_many(EventKind.KEY_ROTATED, rotated, message=message, using=alias)
    return result
