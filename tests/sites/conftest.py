"""Fixtures for host-site tests: users of any user model, the flow, child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Permission
from django.db import connections
from django.test import Client
from django.urls import reverse

from hubspot_connect.testing import FakeHubSpot, FakeHubSpotServer

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-host-site"


def login_of(name: str) -> str:
    """A login that suits any user model: a username, or an email address."""
    return f"{name}@example.com"


def create_user(name: str, *, superuser: bool = False, perms: tuple[str, ...] = ()) -> Any:
    """A user of the site's user model, created the way the model's manager expects.

    Only ``USERNAME_FIELD`` and ``EMAIL_FIELD`` are named, never ``username``/``email``.
    """
    user_model = get_user_model()
    fields: dict[str, Any] = {user_model.USERNAME_FIELD: login_of(name), "password": PASSWORD}
    email_field = user_model.get_email_field_name()
    concrete = {field.name for field in user_model._meta.concrete_fields}
    if email_field != user_model.USERNAME_FIELD and email_field in concrete:
        fields[email_field] = login_of(name)
    manager: Any = user_model._default_manager
    user = manager.create_superuser(**fields) if superuser else manager.create_user(**fields)
    for codename in perms:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="hubspot_connect", codename=codename)
        )
    return user


@pytest.fixture
def site_user(db: None) -> AbstractBaseUser:
    """A user who may connect portals (and nothing else)."""
    return create_user("connector", perms=("add_hubspotconnection",))


@pytest.fixture
def site_client(client: Client, site_user: AbstractBaseUser) -> Client:
    client.force_login(site_user)
    return client


@pytest.fixture
def staff_client(db: None) -> Client:
    """A superuser's client, for the admin."""
    client = Client()
    client.force_login(create_user("admin", superuser=True))
    return client


def start_flow(
    client: Client, fake: FakeHubSpot, *, portal_id: int = 12345678, next_url: str = ""
) -> Any:
    """Run the connect flow through the views: returns the callback's response.

    The connect view may answer a GET with a confirmation page whose form POSTs to it.
    """
    url = reverse("hubspot_connect:connect")
    data = {"next": next_url} if next_url else {}
    start = client.get(url, data)
    if start.status_code == 200:
        start = client.post(url, data)
    assert start.status_code == 302, start.content[:500]
    return client.get(fake.approve(start["Location"], portal_id=portal_id))


def in_memory_sqlite() -> bool:
    return any(
        database.vendor == "sqlite"
        and database.creation.is_in_memory_db(database.settings_dict["NAME"])
        for database in connections.all()
    )


@pytest.fixture
def file_databases() -> None:
    """Skip unless every database is one a second connection (or process) can see."""
    if in_memory_sqlite():
        pytest.skip("an in-memory SQLite database is seen by one connection only")


@pytest.fixture
def fake_server() -> Iterator[FakeHubSpotServer]:
    """FakeHubSpot over real HTTP, for code in child processes."""
    with FakeHubSpotServer() as server:
        yield server


@pytest.fixture
def manage(fake_server: FakeHubSpotServer) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``manage.py <args>`` in a child process on this test's databases and fake."""

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        names = {alias: connections[alias].settings_dict["NAME"] for alias in connections}
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE,
            "HOST_SITE_DB_NAMES": json.dumps(names),
            "HOST_SITE_API_BASE_URL": fake_server.url,
            "PYTHONPATH": str(ROOT),
            "NO_PROXY": "127.0.0.1,localhost",
        }
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
