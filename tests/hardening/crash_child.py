"""Helper process for the crash tests: ``migrate`` a file database, or ``seed`` it.

python tests/hardening/crash_child.py migrate
python tests/hardening/crash_child.py seed '[{"portal_id": 1, "access_token": ...}]'
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.hardening.crash_settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from hubspot_connect.models import HubSpotConnection  # noqa: E402


def main(argv: list[str]) -> None:
    if argv[0] == "setup":
        call_command("migrate", verbosity=0, interactive=False)
        for row in json.loads(argv[1]):
            HubSpotConnection.objects.create(
                portal_id=row["portal_id"],
                access_token=row["access_token"],
                refresh_token=row["refresh_token"],
                expires_at=timezone.now() + timedelta(seconds=row["expires_in"]),
                scopes=["oauth"],
            )
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
