"""Real Chromium for end-to-end tests (Debian's ``chromium`` + Playwright for Python).

Without Chromium these tests are skipped with a message saying how to enable them;
with HUBSPOT_REQUIRE_BROWSER=1 (set by ``.ci/run``) a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("HUBSPOT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    browser = [i for i in items if "tests/browser/" in str(i.fspath).replace(os.sep, "/")]
    for item in browser:
        item.add_marker(pytest.mark.browser)
    # Last, so nothing else runs while Playwright's event loop exists.
    items[:] = [i for i in items if i not in browser] + browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One Chromium per module: Playwright's sync API keeps an asyncio loop running on this
    thread while it is open, which Django's ORM refuses, so it must not outlive the module.
    """
    missing = None
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        missing = f"Chromium not found at {CHROMIUM}"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed"
    if missing:
        message = (
            f"{missing}: browser tests skipped. Enable them with "
            "`apt-get install -y chromium` (Debian) and `make test`."
        )
        if os.environ.get("HUBSPOT_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (HUBSPOT_REQUIRE_BROWSER=1 makes this a failure)")
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Folder for screenshots (git-ignored ``artifacts/screenshots``)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
