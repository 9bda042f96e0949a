"""The weekly report in words: the rows the page and the e-mail show, and the
e-mail's subject, plain text and HTML in a reader's language. The worker's
weekly-report deliverer (partnerloop.integrations.weekly_report) is given
`make_renderer(...)` by partnerloop.runtime: the words live with the
translation catalogue and the templates, here in the web layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from partnerloop.analytics import dashboard
from partnerloop.analytics.report import change_percent
from partnerloop.analytics.service import Stats
from partnerloop.integrations.weekly_report import RenderedMail, Renderer, WeeklyReport
from partnerloop.web.admin.dashboard_formats import NONE, Formats
from partnerloop.web.i18n import Translator
from partnerloop.web.pages import environment


@dataclass(frozen=True)
class KpiRow:
    key: str  # which figure (a data-kpi attribute, and the catalogue key's end)
    label: str
    current: str
    previous: str
    change: str


def _signed_points(current: Stats, previous: Stats, fmt: Formats, t: Translator) -> str:
    now, before = dashboard.conversion_rate(current), dashboard.conversion_rate(previous)
    if now is None or before is None:
        return NONE
    difference = now - before
    sign = "+" if difference > 0 else ""
    return t("report.points", value=sign + fmt.percent(difference).removesuffix(" %"))


def kpi_rows(report: WeeklyReport, fmt: Formats, t: Translator) -> list[KpiRow]:
    now, before = report.figures.current, report.figures.previous
    counts = [
        ("clicks", now.clicks, before.clicks),
        ("unique_clicks", now.unique_clicks, before.unique_clicks),
        ("conversions", now.conversions, before.conversions),
    ]
    amounts = [
        ("revenue", now.revenue_minor, before.revenue_minor),
        ("commission", dashboard.earned_minor(now), dashboard.earned_minor(before)),
        ("payouts", now.commissions_minor["paid"], before.commissions_minor["paid"]),
    ]
    rows = [
        KpiRow(
            key,
            t(f"dashboard.kpi.{key}"),
            fmt.count(current),
            fmt.count(previous),
            fmt.change(change_percent(current, previous)),
        )
        for key, current, previous in counts
    ]
    rows.append(
        KpiRow(
            "conversion_rate",
            t("dashboard.kpi.conversion_rate"),
            fmt.percent(dashboard.conversion_rate(now)),
            fmt.percent(dashboard.conversion_rate(before)),
            _signed_points(now, before, fmt, t),
        )
    )
    rows.extend(
        KpiRow(
            key,
            t(f"dashboard.kpi.{key}"),
            fmt.money(current),
            fmt.money(previous),
            fmt.change(change_percent(current, previous)),
        )
        for key, current, previous in amounts
    )
    return rows


def report_context(report: WeeklyReport, t: Translator) -> dict[str, Any]:
    """What the report's templates (page and e-mail) need besides `t`."""
    fmt = Formats(t.language, report.currency)
    return {
        "report": report,
        "fmt": fmt,
        "rows": kpi_rows(report, fmt, t),
        "earned": dashboard.earned_minor,
    }


def make_renderer(public_url: str) -> Renderer:
    def render(report: WeeklyReport, language: str) -> RenderedMail:
        t = Translator(language)
        query = urlencode({"program": report.program_id, "week": report.week.label})
        context = {
            "t": t,
            "lang": t.language,
            "url": f"{public_url.rstrip('/')}/admin/report?{query}",
            **report_context(report, t),
        }
        templates = environment()
        return RenderedMail(
            subject=t("report.mail.subject", program=report.program_name, week=report.week.label),
            text=templates.get_template("admin/report_email.txt").render(context),
            html=templates.get_template("admin/report_email.html").render(context),
        )

    return render
