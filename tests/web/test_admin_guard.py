"""The admin frame: a page needs a signed-in staff session; the menu, errors and
static files a page relies on."""

from __future__ import annotations

import httpx

from tests.conftest import Server
from tests.support.staff import signed_in_client


def test_a_page_without_a_session_sends_the_browser_to_login(server: Server) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False) as anonymous:
        page = anonymous.get("/admin")
        fragment = anonymous.get("/admin", headers={"HX-Request": "true"})
    assert (page.status_code, page.headers["location"]) == (303, "/admin/login")
    # HTMX would swap a redirect's target into the fragment; it gets HX-Redirect.
    assert (fragment.status_code, fragment.headers["hx-redirect"]) == (200, "/admin/login")


def test_a_signed_in_page_has_the_menu_and_html_errors(server: Server) -> None:
    with signed_in_client(server, "analyst") as browser:
        home = browser.get("/admin")
        missing = browser.get("/admin/no-such-page")
        script = browser.get("/static/htmx-2.0.4.min.js")
    assert home.status_code == 200
    assert 'aria-current="page"' in home.text
    assert "Dashboard" in home.text
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert script.status_code == 200
    assert "htmx" in script.text[:2000]
