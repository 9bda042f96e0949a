"""The dashboard in a real browser (chromium): KPIs, charts drawn by Chart.js,
the filter form swapping the figures by HTMX without reloading the page, in
English and Dutch, with screenshots as test artifacts."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from partnerloop.core.clock import utcnow
from tests.conftest import Server
from tests.e2e.conftest import screenshot
from tests.factories.affiliates import create_affiliate_api
from tests.factories.orders import report_order
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.staff import browser_login

CHART_DRAWN = """(name) => {
  const canvas = document.querySelector(`canvas[data-chart="${name}"]`);
  const chart = canvas && window.Chart && window.Chart.getChart(canvas);
  return Boolean(chart) && chart.data.labels.length > 0 && canvas.width > 0;
}"""


@pytest.fixture(scope="module")
def shop(server: Server) -> dict[str, Any]:
    """Today: 5 clicks (4 unique) on three affiliates' links and an order from
    each (245.50); the ten days before: one order a day no affiliate earned (585.00)."""
    today = utcnow().date()
    with server.client() as api:
        program = create_program_api(api, name="Dashboard shop")
        links = []
        for name in ("Ann's Blog", "Deals & Co", "Cyclist"):
            affiliate = create_affiliate_api(api, program["id"], name=name)
            links.append(create_link_api(api, program["id"], affiliate["id"])["code"])
        clicks = []
        for code, visits in zip(links, (2, 1, 1), strict=True):
            with httpx.Client(base_url=server.url, follow_redirects=False) as shopper:
                clicks.append(click(shopper, code))
                for _ in range(visits - 1):
                    click(shopper, code)  # the same browser again: not unique
        with httpx.Client(base_url=server.url, follow_redirects=False) as shopper:
            click(shopper, links[0])
        for number, (click_id, amount) in enumerate(
            zip(clicks, ("120.00", "80.00", "45.50"), strict=True)
        ):
            report_order(api, program["id"], f"browser-{number}", amount, click_id=click_id)
        for days_ago in range(1, 11):
            moment = datetime.combine(today - timedelta(days=days_ago), time(12), tzinfo=UTC)
            report_order(
                api,
                program["id"],
                f"browser-old-{days_ago}",
                f"{20 + 7 * days_ago}.00",
                ordered_at=moment.isoformat(),
            )
    return program


def _kpi(page: Page, name: str) -> str:
    return page.locator(f'[data-kpi="{name}"]').inner_text()


def test_the_dashboard_shows_kpis_and_draws_the_charts(
    page: Page, server: Server, shop: dict[str, Any]
) -> None:
    browser_login(page, server, "analyst")
    page.goto(f"{server.url}/admin?program={shop['id']}")

    expect(page.get_by_role("heading", name="Dashboard shop: dashboard")).to_be_visible()
    assert [_kpi(page, name) for name in ("clicks", "unique_clicks", "conversions")] == [
        "5",
        "4",
        "13",
    ]
    assert _kpi(page, "revenue") == "EUR 830.50"
    page.wait_for_function(CHART_DRAWN, arg="traffic")
    page.wait_for_function(CHART_DRAWN, arg="money")
    expect(page.locator("#top-affiliates tbody tr")).to_have_count(3)
    screenshot(page, "dashboard-en")

    # The filter form swaps the figures in place: no reload, the URL follows.
    page.evaluate("window.__stillHere = true")
    yesterday = (utcnow().date() - timedelta(days=1)).isoformat()
    page.fill("#filter-to", yesterday)
    page.get_by_role("button", name="Show").click()
    expect(page.locator('[data-kpi="clicks"]')).to_have_text("0")
    assert _kpi(page, "conversions") == "10"
    assert page.evaluate("window.__stillHere") is True
    assert f"to={yesterday}" in page.url
    page.wait_for_function(CHART_DRAWN, arg="money")
    expect(page.get_by_text("No affiliate had clicks or sales in this period.")).to_be_visible()


def test_the_dutch_dashboard(browser: Browser, server: Server, shop: dict[str, Any]) -> None:
    context = browser.new_context(locale="nl-NL")
    page = context.new_page()
    try:
        browser_login(page, server, "finance")
        page.goto(f"{server.url}/admin?program={shop['id']}")

        expect(page.get_by_role("heading", name="Beste affiliates")).to_be_visible()
        assert _kpi(page, "revenue") == "EUR 830,50"
        expect(page.locator("html")).to_have_attribute("lang", "nl")
        page.wait_for_function(CHART_DRAWN, arg="traffic")
        screenshot(page, "dashboard-nl")
    finally:
        context.close()
