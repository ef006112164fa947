from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from hubspot_connect.rotation import rotate_encryption_key


class Command(BaseCommand):
    help = "Re-encrypt every stored HubSpot token with the first key of FIELD_ENCRYPTION_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        result = rotate_encryption_key()
        self.stdout.write(
            f"re-encrypted {result.rotated}, already current {result.current}, "
            f"failed {result.failed}"
        )
        if result.failed:
            raise SystemExit(1)
