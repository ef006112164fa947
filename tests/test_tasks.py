"""hubspot_connect.tasks: the Celery task, run by a real worker over Redis.

The worker runs in a thread of this process (``celery.contrib.testing.worker``), with
Redis on 127.0.0.1:6379 as broker and result backend; without Redis the worker test is
skipped and the task is still tested eagerly.
"""

from __future__ import annotations

import importlib.util
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from hubspot_connect.models import HubSpotConnection, HubSpotConnectionEvent
from hubspot_connect.tasks import refresh_hubspot_tokens
from hubspot_connect.testing import FakeHubSpot

MakeConnection = Callable[..., HubSpotConnection]
REDIS = "redis://127.0.0.1:6379/14"


def redis_is_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    app = Celery(f"hubspot-connect-tests-{uuid.uuid4().hex[:8]}", set_as_current=True)
    app.conf.update(
        broker_url=REDIS,
        result_backend=REDIS,
        # A queue of our own: other test runs on the same Redis never take our tasks.
        task_default_queue=f"hubspot-connect-tests-{uuid.uuid4().hex}",
        broker_connection_retry_on_startup=False,
        result_expires=60,
    )
    app.set_default()
    yield app
    app.close()


@pytest.mark.skipif(
    importlib.util.find_spec("redis") is None,
    reason="the redis client library is not installed (pip install 'celery[redis]')",
)
@pytest.mark.skipif(not redis_is_up(), reason="Redis is not running on 127.0.0.1:6379")
@pytest.mark.django_db(transaction=True)
# Celery's Redis result backend still calls redis-py's deprecated setex().
@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
def test_a_real_worker_refreshes_expiring_tokens(
    celery_app: Celery, make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    due = make_connection(1, expires_in=60)
    later = make_connection(2, expires_in=1700)
    make_connection(3, expires_in=60)
    fake_hubspot.revoke_all(3)
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=5):
        # concurrency=1: the in-memory test database does not take writer threads well.
        result = refresh_hubspot_tokens.apply_async(kwargs={"concurrency": 1})
        counts = result.get(timeout=15)
    assert counts["refreshed"] == 1
    assert counts["needs_reauth"] == 1
    assert counts["awaiting_reauth"] == 1
    assert counts["ok"] is False
    assert counts["summary"].startswith("refreshed 1, skipped 0 (refreshed elsewhere)")
    assert HubSpotConnection.objects.get(pk=due.pk).access_token != due.access_token
    assert HubSpotConnection.objects.get(pk=later.pk).access_token == later.access_token


@pytest.mark.django_db
def test_the_task_passes_its_arguments(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot
) -> None:
    one = make_connection(1, expires_in=1700)
    make_connection(2, expires_in=1700)
    counts: dict[str, Any] = refresh_hubspot_tokens.apply(
        kwargs={"within": 60, "portals": [1], "force": True, "concurrency": 1, "retries": 0}
    ).get()
    assert (counts["refreshed"], counts["failed"], counts["ok"]) == (1, 0, True)
    assert (counts["exit_status"], counts["credentials_rejected"]) == (0, "")
    assert HubSpotConnection.objects.get(pk=one.pk).access_token != one.access_token
    fake_hubspot.fail("status", status=503)
    counts = refresh_hubspot_tokens.apply(
        kwargs={"portals": [2], "force": True, "concurrency": 1, "retries": 0}
    ).get()
    assert (counts["refreshed"], counts["failed"], counts["ok"]) == (0, 1, False)
    assert counts["exit_status"] == 1


@pytest.mark.django_db
def test_the_task_returns_exit_status_2_when_the_credentials_are_rejected(
    make_connection: MakeConnection, fake_hubspot: FakeHubSpot, settings: Any
) -> None:
    make_connection(1, expires_in=60)
    make_connection(2, expires_in=60)
    settings.HUBSPOT_CLIENT_SECRET = "a-secret-hubspot-does-not-know"
    counts: dict[str, Any] = refresh_hubspot_tokens.apply(kwargs={"concurrency": 1}).get()
    assert (counts["exit_status"], counts["ok"], counts["failed"]) == (2, False, 0)
    assert "invalid_client" in counts["credentials_rejected"]
    assert "HUBSPOT_CLIENT_SECRET" in counts["summary"]
    assert "a-secret-hubspot-does-not-know" not in str(counts)
    assert HubSpotConnectionEvent.objects.filter(kind="credentials_rejected").count() == 1
    assert not HubSpotConnection.objects.exclude(refresh_failures=0).exists()


def test_the_task_name_is_stable() -> None:
    assert refresh_hubspot_tokens.name == "hubspot_connect.tasks.refresh_hubspot_tokens"
