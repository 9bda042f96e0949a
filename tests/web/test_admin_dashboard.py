"""The admin dashboard over real HTTP: KPIs from real traffic (redirects and orders
through the API), the per-day series, the top affiliates and their CSV, HTMX
fragments, periods, roles and programs out of reach, and sync health."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from html import unescape
from typing import Any

import httpx
import pytest

from partnerloop.core.clock import utcnow
from partnerloop.web.csv_export import safe_cell as csv_cell
from tests.conftest import Server, drain
from tests.factories.affiliates import create_affiliate_api
from tests.factories.orders import report_order
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.http import Reply, ScriptedServer
from tests.support.staff import signed_in_client


def kpis(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-kpi="([a-z_]+)">([^<]*)<', html))


def top_rows(html: str) -> list[list[str]]:
    table = html.split('id="top-affiliates"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-affiliate="[^"]+">(.*?)</tr>', table, flags=re.S)
    return [
        [
            unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)
        ]
        for row in rows
    ]


def series_of(html: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="dashboard-series">(.*?)</script>', html, re.S
    )
    assert match, html
    return dict(json.loads(match.group(1)))


def shopper(server: Server) -> httpx.Client:
    """A browser of its own: its tracking cookie makes its second click not unique."""
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=30.0)


def traffic(server: Server) -> dict[str, Any]:
    """A program with two affiliates and real clicks and orders, made over HTTP:
    A: 4 clicks (3 unique), orders of 100.00 (paid) and 33.33 (pending);
    B: 2 clicks (2 unique), an order of 50.00 (approved); and an order of 20.00
    that no affiliate earned."""
    with server.client() as api:
        program = create_program_api(api, commission={"type": "percentage", "value": "10"})
        a = create_affiliate_api(api, program["id"], name="Ann's Blog")
        b = create_affiliate_api(api, program["id"], name="Bob & Co")
        link_a = create_link_api(api, program["id"], a["id"])
        link_b = create_link_api(api, program["id"], b["id"])
        with shopper(server) as one, shopper(server) as two, shopper(server) as three:
            first = click(one, link_a["code"])
            click(one, link_a["code"])
            second = click(two, link_a["code"])
            third = click(three, link_b["code"])
        with shopper(server) as four, shopper(server) as five:
            click(four, link_b["code"])
            click(five, link_a["code"])
        paid = report_order(api, program["id"], "o-paid", "100.00", click_id=first)
        report_order(api, program["id"], "o-pending", "33.33", click_id=second)
        approved = report_order(api, program["id"], "o-approved", "50.00", click_id=third)
        report_order(api, program["id"], "o-nobody", "20.00")
        for commission_id, steps in (
            (paid["commissions"][0]["id"], ("approve", "mark-paid")),
            (approved["commissions"][0]["id"], ("approve",)),
        ):
            for step in steps:
                moved = api.post(f"/api/v1/commissions/{commission_id}/{step}")
                assert moved.status_code == 200, moved.text
    return {"program": program, "a": a, "b": b}


@pytest.fixture(scope="module")
def made(server: Server) -> dict[str, Any]:
    return traffic(server)


def test_the_kpis_are_the_traffic_made_through_the_api(
    server: Server, made: dict[str, Any]
) -> None:
    program, a, b = made["program"], made["a"], made["b"]
    with signed_in_client(server, "analyst") as browser:
        page = browser.get("/admin", params={"program": program["id"]})

    assert page.status_code == 200, page.text
    assert kpis(page.text) == {
        "clicks": "6",
        "unique_clicks": "5",
        "conversions": "4",
        "conversion_rate": "80.00 %",
        "revenue": "EUR 203.33",
        "payouts": "EUR 10.00",
        "commission_pending": "EUR 3.33",
        "commission_approved": "EUR 5.00",
        "commission_paid": "EUR 10.00",
        "commission_reversed": "EUR 0.00",
        "commission_declined": "EUR 0.00",
    }
    # By revenue: A (133.33) before B (50.00); the unattributed order is in the totals only.
    assert top_rows(page.text) == [
        [a["id"], "Ann's Blog", "4", "3", "2", "66.67 %", "EUR 133.33", "EUR 13.33"],
        [b["id"], "Bob & Co", "2", "2", "1", "50.00 %", "EUR 50.00", "EUR 5.00"],
    ]
    today = utcnow().date()
    series = series_of(page.text)
    assert series["labels"][0] == (today - timedelta(days=29)).isoformat()
    assert series["labels"][-1] == today.isoformat()
    assert len(series["labels"]) == 30
    traffic_sets = series["charts"]["traffic"]
    assert [s["label"] for s in traffic_sets] == ["Clicks", "Unique clicks", "Conversions"]
    assert [s["data"][-1] for s in traffic_sets] == [6, 5, 4]
    assert sum(traffic_sets[0]["data"]) == 6
    money = series["charts"]["money"]
    assert [(s["label"], s["data"][-1]) for s in money] == [
        ("Revenue", "203.33"),
        ("Commission", "18.33"),
    ]
    # The same numbers as a table for readers without JavaScript or a screen.
    assert f'<th scope="row">{today.isoformat()}</th>' in page.text
    assert '<script src="/static/chart-4.4.7.umd.js" defer></script>' in page.text
    assert '<script src="/static/htmx-2.0.4.min.js" defer></script>' in page.text


def test_the_dutch_page_writes_numbers_the_dutch_way(server: Server, made: dict[str, Any]) -> None:
    with signed_in_client(server, "finance", language="nl") as browser:
        page = browser.get("/admin", params={"program": made["program"]["id"]})

    figures = kpis(page.text)
    assert page.headers["content-language"] == "nl"
    assert (figures["conversion_rate"], figures["revenue"]) == ("80,00 %", "EUR 203,33")
    assert "Beste affiliates" in page.text
    assert "Omzet" in series_of(page.text)["charts"]["money"][0]["label"]


def test_the_csv_has_every_affiliate_with_exact_amounts(
    server: Server, made: dict[str, Any]
) -> None:
    program, a, b = made["program"], made["a"], made["b"]
    today = utcnow().date()
    first = (today - timedelta(days=6)).isoformat()
    with signed_in_client(server, "analyst") as browser:
        response = browser.get(
            "/admin/dashboard.csv",
            params={
                "program": program["id"],
                "from": first,
                "to": today.isoformat(),
                "sort": "clicks",
            },
        )

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="affiliates-{program["id"]}-'
        f'{first.replace("-", "")}-{today.isoformat().replace("-", "")}.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows == [
        [
            "affiliate_id",
            "name",
            "clicks",
            "unique_clicks",
            "conversions",
            "conversion_rate_percent",
            "revenue",
            "commission_pending",
            "commission_approved",
            "commission_paid",
            "commission_reversed",
            "commission_declined",
            "currency",
            "from",
            "to",
        ],
        [
            a["id"],
            "Ann's Blog",
            "4",
            "3",
            "2",
            "66.67",
            "133.33",
            "3.33",
            "0.00",
            "10.00",
            "0.00",
            "0.00",
            "EUR",
            first,
            today.isoformat(),
        ],
        [
            b["id"],
            "Bob & Co",
            "2",
            "2",
            "1",
            "50.00",
            "50.00",
            "0.00",
            "5.00",
            "0.00",
            "0.00",
            "0.00",
            "EUR",
            first,
            today.isoformat(),
        ],
    ]


def test_a_period_without_traffic_shows_zeros(server: Server, made: dict[str, Any]) -> None:
    with signed_in_client(server, "analyst") as browser:
        page = browser.get(
            "/admin",
            params={"program": made["program"]["id"], "from": "2025-01-01", "to": "2025-12-31"},
        )

    figures = kpis(page.text)
    assert page.status_code == 200
    assert (figures["clicks"], figures["revenue"], figures["conversion_rate"]) == (
        "0",
        "EUR 0.00",
        "\u2013",
    )
    assert len(series_of(page.text)["labels"]) == 365
    assert 'id="top-affiliates"' not in page.text
    assert "No affiliate had clicks or sales in this period." in page.text


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        names = ['=HYPERLINK("http://evil.example")', "@SUM(A1)", "+31 6 1234", "-1+2"]
        for name in names:
            affiliate = create_affiliate_api(api, program["id"], name=name)
            link = create_link_api(api, program["id"], affiliate["id"])
            with shopper(server) as browser:
                click(browser, link["code"])
    with signed_in_client(server, "manager") as staff:
        response = staff.get("/admin/dashboard.csv", params={"program": program["id"]})

    written = sorted(row[1] for row in list(csv.reader(io.StringIO(response.text)))[1:])
    assert written == sorted("'" + name for name in names)
    # Our own numbers are data, not formulas: a negative amount stays a number.
    assert (csv_cell("-1.50"), csv_cell(-3), csv_cell("-cmd"), csv_cell("Ann")) == (
        "-1.50",
        "-3",
        "'-cmd",
        "Ann",
    )
    # Some spreadsheets skip a leading tab or carriage return before they look.
    assert (csv_cell("\t=1"), csv_cell("\r@x")) == ("'\t=1", "'\r@x")


def test_htmx_gets_the_figures_fragment_and_a_browser_the_whole_page(
    server: Server, made: dict[str, Any]
) -> None:
    program_id = made["program"]["id"]
    with signed_in_client(server, "analyst") as browser:
        whole = browser.get("/admin", params={"program": program_id, "sort": "clicks"})
        fragment = browser.get(
            "/admin",
            params={"program": program_id, "sort": "clicks"},
            headers={"HX-Request": "true"},
        )
        restore = browser.get(
            "/admin",
            params={"program": program_id},
            headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
        )

    assert whole.text.lstrip().startswith("<!doctype html>")
    assert 'id="sync-health"' in whole.text or "no connectors yet" in whole.text
    assert 'hx-get="/admin"' in whole.text
    assert 'hx-target="#dashboard-figures"' in whole.text
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<section id="dashboard-figures"')
    assert "<html" not in fragment.text
    assert "<header" not in fragment.text
    assert kpis(fragment.text) == kpis(whole.text)
    assert top_rows(fragment.text) == top_rows(whole.text)
    assert [row[0] for row in top_rows(fragment.text)] == [made["a"]["id"], made["b"]["id"]]
    assert fragment.headers["vary"] == "HX-Request, Accept-Language"
    assert restore.text.lstrip().startswith("<!doctype html>")


def test_the_affiliate_table_pages(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        made = []
        for clicks in range(27, 0, -1):  # 27 affiliates, 27 down to 1 clicks
            affiliate = create_affiliate_api(api, program["id"], name=f"Affiliate {clicks}")
            link = create_link_api(api, program["id"], affiliate["id"])
            with shopper(server) as browser:
                for _ in range(clicks):
                    click(browser, link["code"])
            made.append(affiliate["id"])
    with signed_in_client(server, "analyst") as staff:
        first = staff.get("/admin", params={"program": program["id"], "sort": "clicks"})
        second = staff.get("/admin", params={"program": program["id"], "sort": "clicks", "page": 2})

    assert [row[0] for row in top_rows(first.text)] == made[:25]
    assert [row[0] for row in top_rows(second.text)] == made[25:]
    assert ('rel="next"' in first.text, 'rel="prev"' in first.text) == (True, False)
    assert ('rel="next"' in second.text, 'rel="prev"' in second.text) == (False, True)


@pytest.mark.parametrize("role", ["owner", "manager", "finance", "analyst"])
def test_every_role_may_read_the_dashboard(server: Server, made: dict[str, Any], role: str) -> None:
    with signed_in_client(server, role) as browser:
        page = browser.get("/admin", params={"program": made["program"]["id"]})
        export = browser.get("/admin/dashboard.csv", params={"program": made["program"]["id"]})

    assert (page.status_code, export.status_code) == (200, 200)
    assert kpis(page.text)["clicks"] == "6"
    assert len(list(csv.reader(io.StringIO(export.text)))) == 3


def test_a_user_bound_to_one_program_never_sees_another(
    server: Server, made: dict[str, Any]
) -> None:
    with server.client() as api:
        own = create_program_api(api, name="Own shop")
    other = made["program"]["id"]
    with signed_in_client(server, "manager", program_id=own["id"]) as browser:
        mine = browser.get("/admin")
        page = browser.get("/admin", params={"program": other})
        fragment = browser.get("/admin", params={"program": other}, headers={"HX-Request": "true"})
        export = browser.get("/admin/dashboard.csv", params={"program": other})

    assert mine.status_code == 200
    assert kpis(mine.text)["clicks"] == "0"  # its own program, not the busy one
    assert "Own shop: dashboard" in mine.text
    assert (page.status_code, fragment.status_code, export.status_code) == (404, 404, 404)
    assert page.headers["content-type"].startswith("text/html")
    assert made["a"]["id"] not in page.text + fragment.text + export.text
    assert "EUR 203.33" not in page.text + fragment.text


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-13-01"},
        {"to": "yesterday"},
        {"from": "2026-1-5", "to": "2026-01-31"},
        {"from": "2026-02-01", "to": "2026-01-31"},
        {"from": "2024-01-01", "to": "2025-01-01"},  # 367 days
        {"sort": "name"},
        {"page": "0"},
    ],
)
def test_a_bad_period_or_filter_is_refused_with_an_html_422(
    server: Server, made: dict[str, Any], params: dict[str, str]
) -> None:
    with signed_in_client(server, "analyst") as browser:
        page = browser.get("/admin", params={"program": made["program"]["id"], **params})
        export = browser.get(
            "/admin/dashboard.csv", params={"program": made["program"]["id"], **params}
        )

    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert 'data-kpi="clicks"' not in page.text
    assert export.status_code == (422 if "page" not in params else 200)


def test_the_longest_period_is_a_leap_year(server: Server, made: dict[str, Any]) -> None:
    with signed_in_client(server, "analyst") as browser:
        page = browser.get(
            "/admin",
            params={"program": made["program"]["id"], "from": "2024-01-01", "to": "2024-12-31"},
        )

    assert page.status_code == 200
    assert len(series_of(page.text)["labels"]) == 366


def test_sync_health_of_a_webhook_connector(server: Server) -> None:
    # The 503 asks for an hour's wait: the retry never falls inside this test.
    later = Reply(503, headers={"Retry-After": "3600"})
    receiver = ScriptedServer([Reply(200), later], then=later)
    with receiver.running(), server.client() as api:
        program = create_program_api(api)
        created = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "webhook",
                "settings": {"url": receiver.url, "events": ["conversion.created"]},
            },
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        report_order(api, program["id"], "health-1", "10.00")
        drain(server.runtime)  # delivered (200)
        report_order(api, program["id"], "health-2", "10.00")
        drain(server.runtime)  # 503: waits for a retry
        with signed_in_client(server, "analyst") as browser:
            page = browser.get("/admin", params={"program": program["id"]})

    row = page.text.split(f'<tr data-connector="{hook["id"]}">', 1)[1].split("</tr>", 1)[0]
    cells = dict(re.findall(r'data-health="([a-z_0-9]+)">(.*?)</td>', row, re.S))
    assert len(receiver.received) == 2
    assert cells["delivered"] == "1"
    assert cells["backlog"] == "1"
    assert cells["dead"] == "0"
    assert cells["uptime_24h"].startswith("50.00 %")
    assert "2 attempts" in cells["uptime_24h"]
    assert cells["p95"].endswith(" ms")
    assert "did not fail with a connection error, a timeout or a 5xx answer" in page.text


def test_a_staff_session_is_needed_for_the_csv(server: Server, made: dict[str, Any]) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False) as anonymous:
        response = anonymous.get("/admin/dashboard.csv", params={"program": made["program"]["id"]})

    assert (response.status_code, response.headers["location"]) == (303, "/admin/login")
