"""The demo's views served by an ASGI server (uvicorn, started by the test) over real HTTP.

A browser-like client logs in, connects a portal through the fake HubSpot consent screen
the example project mounts, calls HubSpot from the demo's page, and asks the test site's
``async def`` view for a token, which ``aget_access_token()`` refreshes on the way.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from django.conf import settings

from hubspot_connect.fields import decrypt
from tests.sites.views import fingerprint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PORTAL = 12345678
PASSWORD = "asgi-demo-pw"


class Forms(HTMLParser):
    """The forms of a page: action, method and the values a browser would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action", ""), "fields": {}, "buttons": []})
        elif tag == "input" and self.forms and values.get("name"):
            if values.get("type") in ("radio", "checkbox") and "checked" not in values:
                return
            self.forms[-1]["fields"][values["name"]] = values.get("value", "")
        elif tag == "button" and self.forms and values.get("name"):
            self.forms[-1]["buttons"].append((values["name"], values.get("value", "")))


def forms_of(response: requests.Response) -> list[dict[str, Any]]:
    parser = Forms()
    parser.feed(response.text)
    return parser.forms


def submit(
    session: requests.Session, page: requests.Response, to: str = "", **extra: str
) -> requests.Response:
    """Submit the page's form that posts to ``to`` or has the ``extra`` button."""
    forms = forms_of(page)
    form = next(
        f
        for f in forms
        if (to and to in urljoin(page.url, f["action"] or page.url))
        or any((name, value) in f["buttons"] for name, value in extra.items())
        or (not to and not f["buttons"] and "logout" not in f["action"])
    )
    data = {**form["fields"], **extra}
    return session.post(urljoin(page.url, form["action"] or page.url), data=data, timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Site:
    url: str
    database: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def asgi_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    pytest.importorskip("uvicorn")
    folder = tmp_path_factory.mktemp("asgi")
    port = free_port()
    key = settings.FIELD_ENCRYPTION_KEY
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.sites.asgi_site",
        "DEMO_ENV_FILE": str(folder / "no.env"),
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "FIELD_ENCRYPTION_KEY": key if isinstance(key, str) else key[0],
        "HUBSPOT_FAKE": "1",
        "HUBSPOT_FAKE_STORE": str(folder / "fake.json"),
        "DEMO_PORT": str(port),
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        "PYTHONPATH": str(ROOT),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    for args in (
        ["migrate", "-v", "0"],
        ["createsuperuser", "--noinput", "--username", "demo", "--email", "demo@example.com"],
    ):
        subprocess.run(
            [sys.executable, "-m", "django", *args], cwd=ROOT, env=env, check=True, timeout=120
        )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "example_project.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(url + "/", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None, "uvicorn exited"
                time.sleep(0.2)
        yield Site(url, folder / "db.sqlite3", env)
    finally:
        server.terminate()
        server.wait(10)


def stored_token(database: Path) -> str:
    with sqlite3.connect(database) as db:
        (value,) = db.execute(
            "SELECT access_token FROM hubspot_connect_hubspotconnection WHERE portal_id = ?",
            (PORTAL,),
        ).fetchone()
    return decrypt(value)


def test_the_demo_under_uvicorn_connects_calls_hubspot_and_serves_an_async_view(
    asgi_site: Site,
) -> None:
    browser = requests.Session()
    browser.trust_env = False
    login = browser.get(asgi_site.url + "/accounts/login/", timeout=30)
    home = submit(browser, login, "/accounts/login/", username="demo", password=PASSWORD)
    assert home.status_code == 200
    assert "demo" in home.text
    start = browser.get(asgi_site.url + "/hubspot/connect/", timeout=30)
    if "fake-hubspot" not in start.url:  # the connect page asks to confirm with a POST
        start = submit(browser, start, "/hubspot/connect/")
    assert "/fake-hubspot/oauth/" in start.url, start.url
    connected = submit(browser, start, action="approve")
    assert connected.status_code == 200, connected.text[:500]
    assert str(PORTAL) in connected.text
    account = submit(browser, connected, f"/call/{PORTAL}/", call="account")
    assert account.status_code == 200, account.text[:500]
    assert "app.hubspot.com" in account.text
    first = stored_token(asgi_site.database)
    with sqlite3.connect(asgi_site.database) as db:  # expire it: the async view refreshes
        db.execute(
            "UPDATE hubspot_connect_hubspotconnection SET expires_at = ? WHERE portal_id = ?",
            ("2000-01-01 00:00:00", PORTAL),
        )
    answer = browser.get(f"{asgi_site.url}/site/async-token/{PORTAL}/", timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    refreshed = stored_token(asgi_site.database)
    assert refreshed != first
    assert answer.json() == {"portal_id": PORTAL, "token": fingerprint(refreshed)}
