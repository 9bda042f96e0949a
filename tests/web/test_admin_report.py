"""The weekly report: the page (a week against the week before, top affiliates,
commissions awaiting review, sync health) and the same report e-mailed through a
real SMTP server on loopback, in each reader's language, once per program and
week however often it is queued (the worker's Monday task, `partnerloop report
send`, a second pass)."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from html import unescape
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from partnerloop.access import staff as staff_accounts
from partnerloop.analytics.report import week_of
from partnerloop.cli import app
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.integrations import weekly_report
from partnerloop.sync.models import OutboxMessage
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.orders import report_order
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.clock import Clock, worker
from tests.support.smtp import Inbox, free_port, smtp_server
from tests.support.staff import make_staff, signed_in_client

OPS = "ops-report@example.com"


def shopper(server: Server) -> httpx.Client:
    """A browser of its own (its own tracking cookie)."""
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=30.0)


def kpi_rows(html: str) -> dict[str, list[str]]:
    table = html.split('id="report-kpis"', 1)[1].split("</table>", 1)[0]
    rows = {}
    for key, body in re.findall(r'<tr data-kpi="([a-z_]+)">(.*?)</tr>', table, re.S):
        rows[key] = [unescape(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)]
    return rows


@pytest.fixture(scope="module")
def week_data(server: Server) -> dict[str, Any]:
    """This ISO week: real clicks and two attributed orders (A 100.00 pending, B
    40.00 approved); the week before: an unattributed order of 60.00."""
    this_week = week_of(utcnow().date())
    before = datetime.combine(this_week.monday - timedelta(days=7), time(12), tzinfo=UTC)
    with server.client() as api:
        program = create_program_api(
            api,
            name=f"Report shop {secrets.token_hex(3)}",
            commission={"type": "percentage", "value": "10"},
        )
        a = create_affiliate_api(api, program["id"], name="Ann")
        b = create_affiliate_api(api, program["id"], name="Bea <b>")
        link_a = create_link_api(api, program["id"], a["id"])
        link_b = create_link_api(api, program["id"], b["id"])
        with shopper(server) as one, shopper(server) as two:
            first = click(one, link_a["code"])
            click(one, link_a["code"])
            second = click(two, link_b["code"])
        report_order(api, program["id"], "week-a", "100.00", click_id=first)
        approved = report_order(api, program["id"], "week-b", "40.00", click_id=second)
        moved = api.post(f"/api/v1/commissions/{approved['commissions'][0]['id']}/approve")
        assert moved.status_code == 200, moved.text
        report_order(api, program["id"], "week-before", "60.00", ordered_at=before.isoformat())
    return {"program": program, "a": a, "b": b, "week": this_week}


def test_the_report_page_compares_the_week_with_the_week_before(
    server: Server, week_data: dict[str, Any]
) -> None:
    program, week = week_data["program"], week_data["week"]
    with signed_in_client(server, "analyst") as browser:
        page = browser.get("/admin/report", params={"program": program["id"], "week": week.label})

    assert page.status_code == 200, page.text
    assert kpi_rows(page.text) == {
        "clicks": ["3", "0", "\u2013"],
        "unique_clicks": ["2", "0", "\u2013"],
        "conversions": ["2", "1", "+100.0 %"],
        "conversion_rate": ["100.00 %", "\u2013", "\u2013"],
        "revenue": ["EUR 140.00", "EUR 60.00", "+133.3 %"],
        "commission": ["EUR 14.00", "EUR 0.00", "\u2013"],
        "payouts": ["EUR 0.00", "EUR 0.00", "\u2013"],
    }
    top = page.text.split('id="report-top"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'data-affiliate="([^"]+)"', top) == [
        week_data["a"]["id"],
        week_data["b"]["id"],
    ]
    assert "Bea &lt;b&gt;" in top
    assert "Commissions awaiting review (pending): 1." in page.text
    assert "Dead letters: 0. Waiting in the backlog: 0." in page.text
    assert f"{program['name']}: weekly report {week.label}" in page.text
    assert 'rel="next"' not in page.text  # no report of a week that has not begun


def test_the_report_shows_the_last_complete_week_by_default(
    server: Server, week_data: dict[str, Any]
) -> None:
    with signed_in_client(server, "finance", language="nl") as browser:
        page = browser.get("/admin/report", params={"program": week_data["program"]["id"]})

    last_week = week_data["week"].previous()
    assert page.status_code == 200
    assert f"weekrapport {last_week.label}" in page.text
    # The week before this one had the 60.00 order.
    assert kpi_rows(page.text)["revenue"][0] == "EUR 60,00"
    assert 'rel="next"' in page.text


@pytest.mark.parametrize("week", ["2026-W60", "2026-47", "2025-W53", "9999-W01"])
def test_a_bad_week_is_refused_with_an_html_422(
    server: Server, week_data: dict[str, Any], week: str
) -> None:
    with signed_in_client(server, "analyst") as browser:
        page = browser.get(
            "/admin/report", params={"program": week_data["program"]["id"], "week": week}
        )

    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="report-kpis"' not in page.text


def test_a_user_bound_to_another_program_gets_404(
    server: Server, week_data: dict[str, Any]
) -> None:
    with server.client() as api:
        own = create_program_api(api)
    with signed_in_client(server, "owner", program_id=own["id"]) as browser:
        page = browser.get("/admin/report", params={"program": week_data["program"]["id"]})

    assert page.status_code == 404
    assert week_data["a"]["id"] not in page.text


def _set_language(server: Server, email: str, language: str) -> None:
    with transaction(server.runtime.sessions) as db:
        user = staff_accounts.find_by_email(db, server.runtime.cipher, email)
        assert user is not None
        user.language = language


def _cli(server: Server, *args: str) -> str:
    settings = server.runtime.settings
    result = CliRunner().invoke(
        app,
        list(args),
        env={
            "PARTNERLOOP_DATA_DIR": str(settings.data_dir),
            "PARTNERLOOP_DATABASE_URL": settings.database_url,
            "PARTNERLOOP_SECRET_KEY": settings.secret_key_hex or "",
        },
    )
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def _mine(inbox: Inbox, program_name: str) -> dict[str, list[EmailMessage]]:
    by_address: dict[str, list[EmailMessage]] = {}
    for envelope, email in inbox.messages:
        if program_name in str(email["Subject"]):
            for address in envelope.rcpt_tos:
                by_address.setdefault(address, []).append(email)
    return by_address


def _parts(email: EmailMessage) -> tuple[str, str]:
    text = email.get_body(preferencelist=("plain",))
    html = email.get_body(preferencelist=("html",))
    assert text is not None and html is not None  # noqa: PT018
    return str(text.get_content()), str(html.get_content())  # type: ignore[attr-defined]


def test_the_report_is_e_mailed_once_in_each_readers_language(
    server: Server, week_data: dict[str, Any]
) -> None:
    program, week = week_data["program"], week_data["week"]
    with server.client() as api:
        other = create_program_api(api)
    owner = make_staff(server, "owner", program_id=program["id"])
    _set_language(server, owner, "nl")
    finance = make_staff(server, "finance", program_id=program["id"])
    analyst = make_staff(server, "analyst", program_id=program["id"])
    elsewhere = make_staff(server, "manager", program_id=other["id"])
    port = free_port()
    settings = {
        "mail_url": f"smtp://127.0.0.1:{port}?security=none",
        "mail_from": "partnerloop <reports@shop.example>",
        "notify_emails": (OPS, finance.upper()),  # the same person twice: one e-mail
    }

    with smtp_server(port) as inbox:
        queued = _cli(server, "report", "send", "--program", program["id"], "--week", week.label)
        worker(server.runtime, Clock(), **settings).drain()
        sent = _mine(inbox, program["name"])
        # Queued again by the CLI and by the worker's Monday task, and a second pass.
        again = _cli(server, "report", "send", "--program", program["id"], "--week", week.label)
        with transaction(server.runtime.sessions) as db:
            requeued = weekly_report.enqueue_due(
                db,
                server.runtime.cipher,
                now=week.due_at() + timedelta(hours=1),
                program_ids=[program["id"]],
            )
        worker(server.runtime, Clock(), **settings).drain()
        after = _mine(inbox, program["name"])

    assert queued == f"queued the weekly report of {program['id']} for {week.label}"
    assert again == (
        f"the weekly report of {program['id']} for {week.label} was queued before: not sent again"
    )
    assert requeued == 0
    assert after == sent
    assert {
        address: len(emails)
        for address, emails in sent.items()
        if address in {owner, finance, OPS, analyst, elsewhere}
    } == {
        owner: 1,
        finance: 1,
        OPS: 1,
    }
    with server.runtime.sessions() as db:
        [message] = db.scalars(
            select(OutboxMessage).where(
                OutboxMessage.destination_kind == weekly_report.KIND,
                OutboxMessage.destination_id == program["id"],
            )
        ).all()
    assert (message.state, message.attempts, message.idempotency_key) == (
        "delivered",
        1,
        f"weekly_report:{program['id']}:{week.label}",
    )

    [dutch] = sent[owner]
    assert dutch["Subject"] == f"Weekrapport {program['name']}, {week.label}"
    assert dutch["From"] == "partnerloop <reports@shop.example>"
    assert dutch["To"] == owner
    assert message.id in dutch["Message-ID"]
    text, html = _parts(dutch)
    assert "- Omzet: EUR 140,00 (Week ervoor" in text
    assert "Commissies die op beoordeling wachten (openstaand): 1." in text
    assert "/admin/report?program=" in text
    assert 'id="report-kpis"' in html
    assert "Bea &lt;b&gt;" in html  # names are escaped in the HTML part

    [english] = sent[finance]
    assert english["Subject"] == f"Weekly report {program['name']}, {week.label}"
    text, _ = _parts(english)
    assert "- Revenue: EUR 140.00 (Week before" in text
    assert "change: +133.3 %" not in text  # the catalogue's capital C
    assert "Change: +133.3 %" in text
    assert "1. Ann (" in text
    assert sent[OPS][0]["Message-ID"] != english["Message-ID"]


def test_the_monday_task_queues_each_program_once_from_six_utc(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
    this_week = week_of(utcnow().date())
    before_due = this_week.due_at() - timedelta(minutes=1)
    due = this_week.due_at()

    counts = []
    for now in (before_due, due, due + timedelta(hours=3), due + timedelta(days=6)):
        with transaction(server.runtime.sessions) as db:
            counts.append(
                weekly_report.enqueue_due(
                    db, server.runtime.cipher, now=now, program_ids=[program["id"]]
                )
            )

    # Before 06:00 the due week is last week, when the program did not exist yet.
    assert counts == [0, 1, 0, 0]
    with server.runtime.sessions() as db:
        queued = db.scalars(
            select(OutboxMessage).where(
                OutboxMessage.destination_kind == weekly_report.KIND,
                OutboxMessage.destination_id == program["id"],
            )
        ).all()
    assert [(m.idempotency_key, m.state) for m in queued] == [
        (f"weekly_report:{program['id']}:{this_week.label}", "pending")
    ]
    assert queued[0].next_attempt_at == due  # not sent before it is due


def test_recipients_are_owners_managers_and_finance_of_the_program_once_each(
    server: Server,
) -> None:
    with server.client() as api:
        program = create_program_api(api)
        other = create_program_api(api)
    bound = {
        role: make_staff(server, role, program_id=program["id"])
        for role in ("owner", "manager", "finance", "analyst")
    }
    everywhere = make_staff(server, "manager")
    elsewhere = make_staff(server, "owner", program_id=other["id"])

    with server.runtime.sessions() as db:
        found = weekly_report.recipients(
            db,
            server.runtime.cipher,
            program_id=program["id"],
            notify_emails=[OPS, bound["owner"].upper()],
        )

    addresses = [recipient.email for recipient in found]
    assert len(addresses) == len(set(addresses))
    assert {bound["owner"], bound["manager"], bound["finance"], everywhere, OPS} <= set(addresses)
    assert bound["analyst"] not in addresses
    assert elsewhere not in addresses
    assert addresses[-1] == OPS  # staff first; the notify list adds only new addresses
