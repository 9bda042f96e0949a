"""A real browser for page tests: Debian's chromium driven by Playwright
(`make browser` installs it; Playwright's own browser download is never used).
Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """One Playwright per test run (its sync API allows only one at a time)."""
    if shutil.which("chromium") is None:
        pytest.fail("chromium is missing: run `make browser` (make test does)")
    with sync_playwright() as started:
        yield started


def launch(playwright: Playwright, *extra_args: str) -> Browser:
    """Debian's chromium, headless, with these command-line switches too."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", *extra_args], headless=True
    )


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = launch(playwright)
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-US")
    opened = context.new_page()
    yield opened
    context.close()


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
