"""Staff accounts and signed-in clients for page tests (real HTTP, real browser)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from playwright.sync_api import Page

from partnerloop.access import staff
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from tests.conftest import Server

PASSWORD = "correct horse battery"


def make_staff(server: Server, role: str, *, program_id: str | None = None) -> str:
    """A new staff account with this role; returns its e-mail (password: PASSWORD)."""
    email = f"{role}-{secrets.token_hex(4)}@staff.example"
    with transaction(server.runtime.sessions) as db:
        staff.create(
            db,
            server.runtime.cipher,
            staff.NewStaff(email=email, role=role, password=PASSWORD, program_id=program_id),
            now=utcnow(),
        )
    return email


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token in a page's form."""
    match = re.search(r'name="csrf" value="([^"]*)"', page.text)
    assert match, page.text
    return match.group(1)


@contextmanager
def signed_in_client(
    server: Server, role: str, *, program_id: str | None = None, language: str = "en"
) -> Iterator[httpx.Client]:
    """`with signed_in_client(server, "finance") as browser:` an httpx client with a
    staff session cookie (no API key)."""
    email = make_staff(server, role, program_id=program_id)
    client = httpx.Client(
        base_url=server.url,
        follow_redirects=False,
        timeout=30.0,
        headers={"Accept-Language": language},
    )
    try:
        form = client.get("/admin/login")
        done = client.post(
            "/admin/login", data={"email": email, "password": PASSWORD, "csrf": csrf_of(form)}
        )
        assert (done.status_code, done.headers.get("location")) == (303, "/admin"), done.text
        yield client
    finally:
        client.close()


def browser_login(page: Page, server: Server, role: str, *, program_id: str | None = None) -> str:
    """Sign a Playwright page in as a new staff member; returns the e-mail."""
    email = make_staff(server, role, program_id=program_id)
    page.goto(f"{server.url}/admin/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(f"{server.url}/admin")
    return email
