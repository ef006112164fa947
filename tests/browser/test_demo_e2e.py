"""``make demo`` for real: the example project in a subprocess, driven by Chromium.

The server is ``example_project/demo.py`` itself (setup, then ``runserver``) with its
database, ``.env`` and fake HubSpot state in a temporary folder, so the repository is
left as it was.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hubspot_connect.testing import FakeHubSpot, FileStore

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Demo:
    url: str
    username: str
    password: str
    log: Path
    process: subprocess.Popen[bytes]
    database: Path
    fake_store: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(demo_process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if demo_process.poll() is not None:
            pytest.fail("demo.py exited early:\n" + log.read_text(errors="replace"))
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail("demo.py did not start within 40 s:\n" + log.read_text(errors="replace"))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    watched = [REPO / ".env", REPO / "example_project" / "var"]
    existed = {path: path.exists() for path in watched}
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HUBSPOT_", "DJANGO_", "DEMO_"))
        and key not in ("DATABASE_URL", "DEBUG")
    }
    env.update(
        DEMO_PORT=str(port),
        DEMO_NORELOAD="1",
        DEMO_ENV_FILE=str(tmp_path / ".env"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        HUBSPOT_FAKE_STORE=str(tmp_path / "fake-hubspot.json"),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    log = tmp_path / "demo.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "example_project" / "demo.py")],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so the whole process group can be stopped
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_up(process, url, log)
        match = re.search(r"Log in as (\S+) / (\S+)", log.read_text())
        assert match, log.read_text()
        yield Demo(
            url,
            match.group(1),
            match.group(2),
            log,
            process,
            tmp_path / "demo.sqlite3",
            tmp_path / "fake-hubspot.json",
        )
    finally:
        _stop(process)
    assert process.poll() is not None
    for path, was_there in existed.items():
        assert path.exists() == was_there, f"the demo left {path} behind"


def test_demo_end_to_end(demo: Demo, page: Any, screenshots: Path) -> None:
    started = time.monotonic()
    bad_responses: list[str] = []
    page.on(
        "response",
        lambda response: (
            bad_responses.append(f"{response.status} {response.url}")
            if response.status == 404 or response.status >= 500
            else None
        ),
    )

    # Logged out: the page says where to log in, and which HubSpot it talks to.
    page.goto(demo.url)
    assert "Demo mode" in page.inner_text(".banner")
    assert "make demo" in page.inner_text("main")
    page.screenshot(path=screenshots / "demo-1-home-logged-out.png", full_page=True)

    page.click("main a.button:has-text('Log in')")
    page.fill("input[name=username]", demo.username)
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    assert "Please enter a correct" in page.inner_text(".error-box")
    page.fill("input[name=password]", demo.password)
    page.click("main button[type=submit]")
    page.wait_for_selector("text=Connected HubSpot portals")
    assert "No portal is connected yet." in page.inner_text("main")

    # Connect: the home page's form POSTs to the connect view; approve portal 12345678.
    page.click("main button:has-text('Connect HubSpot')")
    page.wait_for_url(re.compile(r"/fake-hubspot/oauth/authorize\?"))
    heading = page.inner_text("h1")
    assert "Fake HubSpot: approve access for portal 12345678" in heading
    assert "crm.objects.contacts.read" in page.inner_text(".scopes")
    page.screenshot(path=screenshots / "demo-2-consent.png", full_page=True)
    page.click("button[value=approve]")
    page.wait_for_selector("ul.messages")
    assert "HubSpot portal 12345678 is now connected." in page.inner_text("ul.messages")
    row = page.inner_text("tbody tr")
    assert "12345678" in row
    assert "demo-company.hubspot.com" in row
    assert "active" in row
    assert re.search(r"in (29|30)\s+minutes", row), row
    page.screenshot(path=screenshots / "demo-3-home-connected.png", full_page=True)

    # Call HubSpot with the stored token, on HubSpot's dated paths: account, then contacts.
    page.click("button:has-text('Call HubSpot')")
    page.wait_for_selector("text=Account details of portal 12345678")
    assert "US/Eastern" in page.inner_text("main table")
    assert "GET /account-info/2026-03/details" in page.inner_text("main")
    assert "HTTP 200" in page.inner_text("main")
    page.screenshot(path=screenshots / "demo-4-api-result.png", full_page=True)
    page.click("text=Back to the portals")
    page.select_option("select[name=call]", "contacts")
    page.click("button:has-text('Call HubSpot')")
    page.wait_for_selector("text=First 5 contacts of portal 12345678")
    assert "GET /crm/objects/2026-03/contacts?limit=5" in page.inner_text("main")
    assert "ada@demo-company.example" in page.inner_text("main table")

    # The portal uninstalls the app at HubSpot while its access token runs out: the next
    # call finds the refresh token revoked, and offers to reconnect that portal.
    FakeHubSpot(store=FileStore(demo.fake_store)).revoke_all(12345678)
    with sqlite3.connect(demo.database, timeout=20) as db:
        db.execute("UPDATE hubspot_connect_hubspotconnection SET expires_at = '2000-01-01'")
    page.click("text=Back to the portals")
    page.click("button:has-text('Call HubSpot')")
    page.wait_for_selector("text=This portal is not connected (any more)")
    page.screenshot(path=screenshots / "demo-5-needs-reauth.png", full_page=True)

    # Reconnect in place: HubSpot's consent screen opens for portal 12345678. The user
    # picks the other account there: it is kept, and the page says 12345678 still waits.
    page.click("main button:has-text('Reconnect')")
    page.wait_for_url(re.compile(r"/fake-hubspot/oauth/12345678/authorize\?"))
    assert "approve access for portal 12345678" in page.inner_text("h1")
    page.check("input[value='87654321']")
    page.click("button[value=approve]")
    page.wait_for_selector("ul.messages li.warning")
    warning = page.inner_text("ul.messages")
    assert "HubSpot portal 87654321 was connected instead of portal 12345678" in warning
    assert "Portal 12345678 still needs reconnecting." in warning
    needing = page.locator("tbody tr", has_text="12345678")
    assert "needs re-auth" in needing.inner_text()
    assert "active" in page.locator("tbody tr", has_text="87654321").inner_text()
    page.screenshot(path=screenshots / "demo-6-other-portal-chosen.png", full_page=True)

    # Reconnect from the home page's row, approving the preselected portal this time.
    needing.locator("button:has-text('Reconnect')").click()
    page.wait_for_url(re.compile(r"/fake-hubspot/oauth/12345678/authorize\?"))
    page.click("button[value=approve]")
    page.wait_for_selector("ul.messages")
    assert "HubSpot portal 12345678 was reconnected." in page.inner_text("ul.messages")
    assert "active" in page.locator("tbody tr", has_text="12345678").inner_text()
    assert page.locator("button:has-text('Reconnect')").count() == 0

    # A plain link to the connect view (a GET) shows the confirmation page; only its
    # button (a POST) starts a flow. Then decline: the friendly page, nothing stored.
    page.goto(demo.url + "hubspot/connect/?next=/")
    assert "Connect HubSpot" in page.inner_text("h1")
    assert page.locator("main form input[name=csrfmiddlewaretoken]").count() == 1
    page.screenshot(path=screenshots / "demo-7-confirm.png", full_page=True)
    page.click("main button:has-text('Connect HubSpot')")
    page.wait_for_url(re.compile(r"/fake-hubspot/oauth/authorize\?"))
    page.click("button[value=decline]")
    page.wait_for_selector("text=You did not connect HubSpot")
    assert "access_denied" in page.inner_text("main")
    page.screenshot(path=screenshots / "demo-8-declined.png", full_page=True)
    page.goto(demo.url)
    assert page.locator("tbody tr").count() == 2

    # A forged callback: the state check answers 400 before any code is used.
    response = page.goto(demo.url + "hubspot/callback/?code=stolen-code&state=forged-state")
    assert response.status == 400
    assert "This connection link is not valid" in page.inner_text("h1")
    page.screenshot(path=screenshots / "demo-9-forged-state-400.png", full_page=True)

    assert bad_responses == []
    output = demo.output()
    assert "Traceback" not in output, output
    assert demo.password not in output.split("Stop with Ctrl+C.", 1)[1]
    assert time.monotonic() - started < 60
