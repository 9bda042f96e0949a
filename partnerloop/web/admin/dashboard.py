"""The admin dashboard at /admin: a program's figures for a period (from the
DailyStats rollup), trend charts, the top affiliates (paged, CSV export) and
the sync health of its connectors.

GET /admin?program=&from=&to=&sort=&page= answers the whole page, or, for an
HTMX request from the filter form or the pager, only the figures fragment.
GET /admin/dashboard.csv takes the same filters and answers every affiliate
of the period as CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from partnerloop.access.roles import Permission
from partnerloop.analytics import dashboard
from partnerloop.analytics.dashboard import AffiliatePage, Day, Period
from partnerloop.analytics.service import COMMISSION_STATES, Stats
from partnerloop.core.clock import utcnow
from partnerloop.core.money import format_amount
from partnerloop.integrations.reporting import affiliate_names, sync_health_of
from partnerloop.web.admin.dashboard_formats import Formats
from partnerloop.web.admin.guard import ProgramChoice, ProgramQuery, Staff, StaffDep
from partnerloop.web.csv_export import csv_response
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.pages import render, translator

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 25
MAX_PAGE = 4000  # 100,000 affiliates deep; the CSV has them all
MAX_CSV_ROWS = 100_000

FromQuery = Annotated[str | None, Query(alias="from", description="First UTC day, YYYY-MM-DD")]
ToQuery = Annotated[str | None, Query(alias="to", description="Last UTC day, YYYY-MM-DD")]
SortQuery = Annotated[str | None, Query(description="Sort the affiliates by this column")]
PageQuery = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page of the affiliate table")]


@dataclass(frozen=True)
class Filters:
    program: ProgramChoice
    period: Period
    sort: str
    page: int

    def query(self, **changes: Any) -> str:
        values: dict[str, Any] = {
            "program": self.program.id,
            "from": self.period.first.isoformat(),
            "to": self.period.last.isoformat(),
            "sort": self.sort,
            "page": self.page,
            **changes,
        }
        return urlencode({name: value for name, value in values.items() if value is not None})


def _filters(
    staff: Staff,
    program: str | None,
    first: str | None,
    last: str | None,
    sort: str | None,
    page: int,
) -> Filters:
    return Filters(
        program=staff.program(program),
        period=dashboard.parse_period(first, last, today=utcnow().date()),
        sort=dashboard.check_sort(sort),
        page=page,
    )


def _is_fragment(request: Request) -> bool:
    # A history restore (back button after hx-push-url) wants the whole page.
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
    )


def _series(days: list[Day], fmt: Formats, t: Any) -> dict[str, Any]:
    """The charts' data: numbers only (amounts as decimal strings), labels from
    the catalogue; put in a JSON script element, never into script code."""

    def amounts(values: list[int]) -> list[str]:
        return [format_amount(value, fmt.currency) for value in values]

    return {
        "labels": [day.day.isoformat() for day in days],
        "charts": {
            "traffic": [
                {"label": t("dashboard.kpi.clicks"), "data": [d.stats.clicks for d in days]},
                {
                    "label": t("dashboard.kpi.unique_clicks"),
                    "data": [d.stats.unique_clicks for d in days],
                },
                {
                    "label": t("dashboard.kpi.conversions"),
                    "data": [d.stats.conversions for d in days],
                },
            ],
            "money": [
                {
                    "label": t("dashboard.kpi.revenue"),
                    "data": amounts([d.stats.revenue_minor for d in days]),
                },
                {
                    "label": t("dashboard.kpi.commission"),
                    "data": amounts([dashboard.earned_minor(d.stats) for d in days]),
                },
            ],
        },
    }


@router.get("/admin")
def dashboard_page(
    request: Request,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    first: FromQuery = None,
    last: ToQuery = None,
    sort: SortQuery = None,
    page: PageQuery = 1,
) -> Response:
    staff.require(Permission.READ)
    if not staff.programs:
        return render(
            request,
            "admin/dashboard_empty.html",
            language=staff.language,
            staff=staff,
            program=None,
        )
    filters = _filters(staff, program, first, last, sort, page)
    fragment = _is_fragment(request)
    now = utcnow()
    with runtime.sessions() as session:
        days = dashboard.daily(session, program_id=filters.program.id, period=filters.period)
        top = dashboard.top_affiliates(
            session,
            program_id=filters.program.id,
            period=filters.period,
            sort=filters.sort,
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
        )
        names = affiliate_names(session, runtime.cipher, (row.affiliate_id for row in top.rows))
        health = (
            None if fragment else sync_health_of(session, program_id=filters.program.id, now=now)
        )
    t = translator(request, preferred=staff.language)
    fmt = Formats(t.language, filters.program.currency)
    response = render(
        request,
        "admin/dashboard_figures.html" if fragment else "admin/dashboard.html",
        language=staff.language,
        staff=staff,
        program=filters.program,
        filters=filters,
        sorts=dashboard.SORTS,
        states=COMMISSION_STATES,
        days=days,
        total=dashboard.totals(days),
        top=top,
        names=names,
        health=health,
        fmt=fmt,
        series=_series(days, fmt, t),
        rate=dashboard.conversion_rate,
        earned=dashboard.earned_minor,
    )
    response.headers["Vary"] = "HX-Request, Accept-Language"
    return response


# --- CSV -----------------------------------------------------------------------------------

CSV_COLUMNS = (
    "affiliate_id",
    "name",
    "clicks",
    "unique_clicks",
    "conversions",
    "conversion_rate_percent",
    "revenue",
    *(f"commission_{state}" for state in COMMISSION_STATES),
    "currency",
    "from",
    "to",
)


def _csv_row(
    affiliate_id: str, name: str, stats: Stats, currency: str, period: Period
) -> list[str | int]:
    rate = dashboard.conversion_rate(stats)
    return [
        affiliate_id,
        name,
        stats.clicks,
        stats.unique_clicks,
        stats.conversions,
        "" if rate is None else format(rate, "f"),
        format_amount(stats.revenue_minor, currency),
        *(format_amount(stats.commissions_minor[state], currency) for state in COMMISSION_STATES),
        currency,
        period.first.isoformat(),
        period.last.isoformat(),
    ]


def _filename(program_id: str, period: Period) -> str:
    def plain(day: date) -> str:
        return day.strftime("%Y%m%d")

    return f"affiliates-{program_id}-{plain(period.first)}-{plain(period.last)}.csv"


@router.get("/admin/dashboard.csv")
def dashboard_csv(
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    first: FromQuery = None,
    last: ToQuery = None,
    sort: SortQuery = None,
) -> Response:
    staff.require(Permission.READ)
    filters = _filters(staff, program, first, last, sort, 1)
    with runtime.sessions() as session:
        everyone: AffiliatePage = dashboard.top_affiliates(
            session,
            program_id=filters.program.id,
            period=filters.period,
            sort=filters.sort,
            limit=MAX_CSV_ROWS,
        )
        names = affiliate_names(
            session, runtime.cipher, (row.affiliate_id for row in everyone.rows)
        )
    return csv_response(
        _filename(filters.program.id, filters.period),
        CSV_COLUMNS,
        (
            _csv_row(
                row.affiliate_id,
                names.get(row.affiliate_id, ""),
                row.stats,
                filters.program.currency,
                filters.period,
            )
            for row in everyone.rows
        ),
    )
