"""An encrypted text field that fails loudly.

The storage format is django-encrypted-model-fields' (a Fernet token stored as text), so
data stays interchangeable with its ``EncryptedTextField``. Two things differ, and both
matter for OAuth tokens:

* a value that does not decrypt raises :class:`TokenDecryptionError` instead of
  returning the ciphertext (which could then be sent to HubSpot as a bearer token);
* ``FIELD_ENCRYPTION_KEY`` is read when used, not frozen at import, so key rotation,
  ``override_settings`` and a missing key all behave predictably.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression

from .conf import app_settings
from .exceptions import TokenDecryptionError
from .sensitive import Secret, secret


@functools.lru_cache(maxsize=8)
def _fernet(keys: tuple[str | bytes, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def get_fernet() -> MultiFernet:
    """The MultiFernet for FIELD_ENCRYPTION_KEY: the first key encrypts, all decrypt."""
    keys = tuple(app_settings.ENCRYPTION_KEYS)
    if not keys:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY is not set; hubspot_connect needs it to encrypt tokens."
        )
    try:
        return _fernet(keys)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY must be a url-safe base64 Fernet key or a list of them."
        ) from exc


def encrypt(value: str) -> str:
    return get_fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> Secret:
    try:
        fernet = get_fernet()
    except ImproperlyConfigured as exc:
        raise TokenDecryptionError(f"Cannot decrypt a stored token: {exc}") from None
    try:
        return Secret(fernet.decrypt(value.encode()).decode())
    except (InvalidToken, UnicodeError):
        raise TokenDecryptionError(
            "A stored token does not decrypt with any key in FIELD_ENCRYPTION_KEY. "
            "Was the key changed without keeping the old one in the list?"
        ) from None


if TYPE_CHECKING:
    _TextField = models.TextField[str, str]
else:
    _TextField = models.TextField


class EncryptedTokenField(_TextField):
    """Stores a string Fernet-encrypted; the empty string is stored as is."""

    def from_db_value(
        self, value: str | None, expression: Expression, connection: BaseDatabaseWrapper
    ) -> str | None:
        if not value:
            return value
        return decrypt(value)

    def get_db_prep_save(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        value = super().get_db_prep_save(value, connection)
        if not value:
            return value
        return encrypt(secret(value))  # not str(value): a plain copy in this frame
