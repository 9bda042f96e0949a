from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from partnerloop.access.service import Scope
from partnerloop.analytics import service as analytics
from partnerloop.core.money import format_amount
from partnerloop.programs import service as programs
from partnerloop.web.api.common import ERRORS, parse_day
from partnerloop.web.deps import PrincipalDep, RuntimeDep

router = APIRouter(tags=["stats"])


class CommissionTotals(BaseModel):
    pending: str
    approved: str
    paid: str
    reversed: str
    declined: str


class StatsOut(BaseModel):
    program_id: str
    currency: str
    clicks: int
    unique_clicks: int = Field(
        description="Clicks from browsers without a recent click for this program; bots excluded."
    )
    conversions: int
    revenue: str = Field(description="Order amounts net of refunds.")
    commissions: CommissionTotals


@router.get("/stats", response_model=StatsOut, responses=ERRORS)
def get_stats(
    program_id: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    affiliate_id: str | None = None,
    from_: Annotated[
        str | None, Query(alias="from", description="First UTC day (YYYY-MM-DD), inclusive.")
    ] = None,
    to: Annotated[str | None, Query(description="Last UTC day (YYYY-MM-DD), inclusive.")] = None,
) -> StatsOut:
    """Totals for a program (optionally one affiliate) over a range of days, read
    from the daily rollups (cost does not grow with traffic)."""
    principal.require(Scope.read)
    principal.require_program(program_id)
    with runtime.sessions() as session:
        program = programs.get_or_raise(session, program_id)
        totals = analytics.stats(
            session,
            program_id=program_id,
            affiliate_id=affiliate_id,
            day_from=parse_day(from_, field="from"),
            day_to=parse_day(to, field="to"),
        )
    currency = program.currency
    return StatsOut(
        program_id=program_id,
        currency=currency,
        clicks=totals.clicks,
        unique_clicks=totals.unique_clicks,
        conversions=totals.conversions,
        revenue=format_amount(totals.revenue_minor, currency),
        commissions=CommissionTotals(
            **{
                state: format_amount(value, currency)
                for state, value in totals.commissions_minor.items()
            }
        ),
    )
