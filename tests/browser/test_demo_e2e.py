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

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Demo:
    url: str
    username: str
    password: str
    log: Path
    process: subprocess.Popen[bytes]

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
        yield Demo(url, match.group(1), match.group(2), log, process)
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

    # Connect: the fake consent page, approve portal 12345678.
    page.click("text=Connect HubSpot")
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

    # Call HubSpot with the stored token: account details, then contacts.
    page.click("button:has-text('Call HubSpot')")
    page.wait_for_selector("text=Account details of portal 12345678")
    assert "US/Eastern" in page.inner_text("main table")
    assert "HTTP 200" in page.inner_text("main")
    page.screenshot(path=screenshots / "demo-4-api-result.png", full_page=True)
    page.click("text=Back to the portals")
    page.select_option("select[name=call]", "contacts")
    page.click("button:has-text('Call HubSpot')")
    page.wait_for_selector("text=First 5 contacts of portal 12345678")
    assert "ada@demo-company.example" in page.inner_text("main table")

    # Connect a second portal, but decline: the friendly page, nothing stored.
    page.click("text=Back to the portals")
    page.click("text=Connect HubSpot")
    page.check("input[value='87654321']")
    assert "87654321" in page.inner_text("h1")
    page.click("button[value=decline]")
    page.wait_for_selector("text=You did not connect HubSpot")
    assert "access_denied" in page.inner_text("main")
    page.screenshot(path=screenshots / "demo-5-declined.png", full_page=True)
    page.goto(demo.url)
    assert "87654321" not in page.inner_text("main")

    # A forged callback: the state check answers 400 before any code is used.
    response = page.goto(demo.url + "hubspot/callback/?code=stolen-code&state=forged-state")
    assert response.status == 400
    assert "This connection link is not valid" in page.inner_text("h1")
    page.screenshot(path=screenshots / "demo-6-forged-state-400.png", full_page=True)

    assert bad_responses == []
    output = demo.output()
    assert "Traceback" not in output, output
    assert demo.password not in output.split("Stop with Ctrl+C.", 1)[1]
    assert time.monotonic() - started < 60
