"""The rollups maintained on write (per affiliate and day, per program and day,
per affiliate and month or quarter month) against a full scan of the facts
they count: clicks, conversions, refunds and commissions moving between
states, reversals included; and the combined span-and-day query over period
edges (mid-month, across a year, a single day, open ends)."""

from __future__ import annotations

import secrets
import threading
import time as clock
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from partnerloop.affiliates import service as affiliates
from partnerloop.analytics import dashboard, service
from partnerloop.analytics.dashboard import Period
from partnerloop.analytics.models import FIGURES, DailyStats, PeriodStats, ProgramDailyStats
from partnerloop.analytics.service import RollupAdd, Stats
from partnerloop.commissions import service as commissions
from partnerloop.commissions.models import Commission
from partnerloop.core.db import transaction
from partnerloop.orders import service as orders
from partnerloop.orders.models import Conversion
from partnerloop.runtime import Runtime
from partnerloop.tracking import service as tracking
from partnerloop.tracking.models import Click
from tests.factories.programs import create_program

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
# Days with activity: both sides of a month end, of a year end, of a part end
# (the 8th / 9th), a leap-free February end, and single days mid-month.
ACTIVE_DAYS = [
    date(2025, 11, 30),
    date(2025, 12, 8),
    date(2025, 12, 9),
    date(2025, 12, 25),
    date(2025, 12, 31),
    date(2026, 1, 1),
    date(2026, 1, 16),
    date(2026, 1, 17),
    date(2026, 2, 28),
    date(2026, 3, 1),
    date(2026, 3, 15),
]
PERIODS = [
    (date(2025, 12, 9), date(2026, 1, 16)),  # mid-month to mid-month across a year
    (date(2025, 12, 31), date(2026, 1, 1)),  # two days across New Year
    (date(2026, 1, 1), date(2026, 1, 1)),  # a single day
    (date(2025, 12, 1), date(2025, 12, 31)),  # a whole month
    (date(2025, 12, 9), date(2025, 12, 24)),  # two whole parts
    (date(2025, 12, 8), date(2025, 12, 9)),  # across a part end
    (date(2025, 11, 25), date(2026, 11, 24)),  # a year, mid-month start
    (date(2026, 2, 28), date(2026, 3, 1)),  # across February's end
    (date(2026, 3, 16), date(2026, 3, 31)),  # nothing in it
]


@dataclass(frozen=True)
class Scenario:
    program_id: str
    affiliate_ids: list[str]


def _at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), UTC)


def _build(session: Session, runtime: Runtime) -> Scenario:
    """A program with three affiliates, clicks, paid orders (attributed by coupon
    and unattributed), commissions approved, paid and declined, refunds partial
    and full (a reversal) and one after payment (a clawback)."""
    program = create_program(session, now=NOW - timedelta(days=800))
    cipher = runtime.cipher
    affiliate_ids = []
    coupons = []
    for n in range(3):
        affiliate = affiliates.sign_up(
            session,
            cipher,
            program_id=program.id,
            email=f"rollup-{secrets.token_hex(4)}@example.com",
            name=f"Partner {n}",
            now=NOW - timedelta(days=800),
        ).affiliate
        affiliates.approve(
            session,
            cipher,
            affiliate_id=affiliate.id,
            program_id=program.id,
            now=NOW - timedelta(days=800),
        )
        affiliate_ids.append(affiliate.id)
        coupons.append(
            tracking.create_coupon(
                session,
                program_id=program.id,
                affiliate_id=affiliate.id,
                code=f"C{n}{secrets.token_hex(4)}",
                now=NOW - timedelta(days=800),
            ).code
        )
    links = [
        tracking.create_link(
            session,
            program_id=program.id,
            affiliate_id=affiliate_id,
            destination_url="https://shop.example.com/",
            now=NOW - timedelta(days=800),
        )
        for affiliate_id in affiliate_ids
    ]
    records = []
    for index, day in enumerate(ACTIVE_DAYS):
        for n, link in enumerate(links):
            for k in range((index + 2 * n) % 4 + 1):
                records.append(
                    tracking.ClickRecord(
                        id=tracking.new_click_id(),
                        program_id=program.id,
                        link_id=link.id,
                        affiliate_id=link.affiliate_id,
                        created_at=_at(day, hour=k * 5 + n),
                        ip=None,
                        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                        referrer=None,
                        landing_url="https://shop.example.com/",
                        subs=(None, None, None, None, None),
                        is_unique=k % 2 == 0,
                    )
                )
    tracking.write_clicks(session, cipher, records)

    recorded: list[orders.Recorded] = []
    for index, day in enumerate(ACTIVE_DAYS):
        coupon = None if index % 4 == 3 else coupons[index % 3]
        recorded.append(
            orders.record_conversion(
                session,
                cipher,
                orders.OrderInput(
                    program_id=program.id,
                    order_id=f"order-{program.id}-{index}",
                    amount_minor=1000 + 137 * index,
                    currency="EUR",
                    source="api",
                    coupon_code=coupon,
                    ordered_at=_at(day, hour=20),
                ),
                now=NOW - timedelta(days=5),
            )
        )
    earned = [r.commissions[0] for r in recorded if r.commissions]
    commissions.approve(session, cipher, commission_id=earned[0].id, program_id=program.id, now=NOW)
    commissions.approve(session, cipher, commission_id=earned[1].id, program_id=program.id, now=NOW)
    commissions.mark_paid(
        session, cipher, commission_id=earned[1].id, program_id=program.id, now=NOW
    )
    commissions.decline(session, cipher, commission_id=earned[2].id, program_id=program.id, now=NOW)
    refunds = [
        (earned[3].order_id, 300),  # partial: a pending commission shrinks
        (earned[4].order_id, None),  # in full: the commission is reversed
        (earned[1].order_id, 500),  # after payment: a clawback
    ]
    for order_id, amount in refunds:
        conversion = orders.find_conversion(session, program_id=program.id, order_id=order_id)
        assert conversion is not None
        orders.record_refund(
            session,
            cipher,
            program_id=program.id,
            order_id=order_id,
            amount_minor=amount if amount is not None else conversion.amount_minor,
            currency="EUR",
            refund_id=f"refund-{order_id}",
            now=NOW,
        )
    states = {
        c.state
        for c in session.scalars(select(Commission).where(Commission.program_id == program.id))
    }
    assert states == {"pending", "approved", "paid", "declined", "reversed"}
    return Scenario(program.id, affiliate_ids)


def _facts(session: Session, program_id: str) -> dict[tuple[str, date], list[int]]:
    """Figures per (affiliate or '', day) from a full scan of the facts."""
    figures: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0] * len(FIGURES))
    slot = {name: n for n, name in enumerate(FIGURES)}
    for click in session.scalars(select(Click).where(Click.program_id == program_id)):
        row = figures[(click.affiliate_id, click.created_at.date())]
        row[slot["clicks"]] += 1
        row[slot["unique_clicks"]] += int(click.is_unique)
    for conversion in session.scalars(
        select(Conversion).where(Conversion.program_id == program_id)
    ):
        row = figures[(conversion.affiliate_id or "", conversion.ordered_at.date())]
        row[slot["conversions"]] += 1
        row[slot["revenue_minor"]] += conversion.amount_minor - conversion.refunded_minor
    for commission in session.scalars(
        select(Commission).where(Commission.program_id == program_id)
    ):
        row = figures[(commission.affiliate_id, commission.stats_day)]
        if commission.state != "reversed":
            row[slot[f"commission_{commission.state}_minor"]] += commission.amount_minor
        # What was taken back: shrunk or reversed before payment, clawed back after.
        row[slot["commission_reversed_minor"]] += (
            commission.original_amount_minor - commission.amount_minor + commission.clawback_minor
        )
    return figures


def _sum(
    facts: dict[tuple[str, date], list[int]],
    *,
    affiliate_id: str | None,
    first: date | None,
    last: date | None,
) -> list[int]:
    total = [0] * len(FIGURES)
    for (affiliate, day), row in facts.items():
        if affiliate_id is not None and affiliate != affiliate_id:
            continue
        if (first is not None and day < first) or (last is not None and day > last):
            continue
        total = [a + b for a, b in zip(total, row, strict=True)]
    return total


def _row(stats: Stats) -> list[int]:
    return [
        stats.clicks,
        stats.unique_clicks,
        stats.conversions,
        stats.revenue_minor,
        *(stats.commissions_minor[state] for state in service.COMMISSION_STATES),
    ]


@pytest.fixture
def scenario(session: Session, runtime: Runtime) -> Scenario:
    return _build(session, runtime)


def test_the_daily_rollups_equal_a_scan_of_the_facts(session: Session, scenario: Scenario) -> None:
    facts = _facts(session, scenario.program_id)

    daily = {
        (row.affiliate_id, row.day): [getattr(row, name) for name in FIGURES]
        for row in session.scalars(
            select(DailyStats).where(DailyStats.program_id == scenario.program_id)
        )
    }
    program_daily = {
        row.day: [getattr(row, name) for name in FIGURES]
        for row in session.scalars(
            select(ProgramDailyStats).where(ProgramDailyStats.program_id == scenario.program_id)
        )
    }

    assert daily == {key: row for key, row in facts.items() if any(row)}
    assert program_daily == {
        day: _sum(facts, affiliate_id=None, first=day, last=day) for day in ACTIVE_DAYS
    }
    assert _sum(facts, affiliate_id=None, first=None, last=None)[0] == sum(
        (index + 2 * n) % 4 + 1 for index in range(len(ACTIVE_DAYS)) for n in range(3)
    )


@pytest.mark.parametrize(("first", "last"), PERIODS)
def test_every_affiliate_over_a_period_equals_the_facts(
    session: Session, scenario: Scenario, first: date, last: date
) -> None:
    facts = _facts(session, scenario.program_id)
    period = Period(first, last)

    page = dashboard.top_affiliates(
        session, program_id=scenario.program_id, period=period, sort="clicks", limit=10
    )
    days = dashboard.daily(session, program_id=scenario.program_id, period=period)
    program_total = service.stats(
        session, program_id=scenario.program_id, affiliate_id=None, day_from=first, day_to=last
    )

    expected = {
        affiliate_id: _sum(facts, affiliate_id=affiliate_id, first=first, last=last)
        for affiliate_id in scenario.affiliate_ids
    }
    assert {row.affiliate_id: _row(row.stats) for row in page.rows} == {
        affiliate_id: figures for affiliate_id, figures in expected.items() if any(figures)
    }
    assert [row.stats.clicks for row in page.rows] == sorted(
        (row.stats.clicks for row in page.rows), reverse=True
    )
    whole = _sum(facts, affiliate_id=None, first=first, last=last)
    assert _row(program_total) == whole
    assert _row(dashboard.totals(days)) == whole
    assert [_row(d.stats) for d in days] == [
        _sum(facts, affiliate_id=None, first=d.day, last=d.day) for d in days
    ]
    for affiliate_id in [*scenario.affiliate_ids, ""]:
        one = service.stats(
            session,
            program_id=scenario.program_id,
            affiliate_id=affiliate_id,
            day_from=first,
            day_to=last,
        )
        assert _row(one) == _sum(facts, affiliate_id=affiliate_id, first=first, last=last)


@pytest.mark.parametrize(
    ("first", "last"),
    [(None, None), (None, date(2026, 1, 16)), (date(2025, 12, 9), None)],
)
def test_open_ended_periods_equal_the_facts(
    session: Session, scenario: Scenario, first: date | None, last: date | None
) -> None:
    facts = _facts(session, scenario.program_id)

    for affiliate_id in [*scenario.affiliate_ids, "", None]:
        got = service.stats(
            session,
            program_id=scenario.program_id,
            affiliate_id=affiliate_id,
            day_from=first,
            day_to=last,
        )

        assert _row(got) == _sum(facts, affiliate_id=affiliate_id, first=first, last=last)


def _table_rows(session: Session, program_id: str) -> dict[str, object]:
    return {
        "daily": sorted(
            (r.affiliate_id, r.day, *(getattr(r, n) for n in FIGURES))
            for r in session.scalars(select(DailyStats).where(DailyStats.program_id == program_id))
        ),
        "program_daily": sorted(
            (r.day, *(getattr(r, n) for n in FIGURES))
            for r in session.scalars(
                select(ProgramDailyStats).where(ProgramDailyStats.program_id == program_id)
            )
        ),
        "period": sorted(
            (r.affiliate_id, r.grain, r.first_day, *(getattr(r, n) for n in FIGURES))
            for r in session.scalars(
                select(PeriodStats).where(PeriodStats.program_id == program_id)
            )
        ),
    }


def _increments(program_id: str) -> list[RollupAdd]:
    rows = []
    for n, day in enumerate([date(2025, 12, 31), date(2026, 1, 1), date(2026, 1, 9)] * 3):
        rows.append(
            RollupAdd(
                program_id,
                ["aff_a", "aff_b", None][n % 3],
                day,
                {"clicks": n + 1, "unique_clicks": n % 2, "commission_pending_minor": 100 * n},
            )
        )
    rows.append(
        RollupAdd(
            program_id,
            "aff_a",
            date(2025, 12, 31),
            {"commission_pending_minor": -100, "commission_approved_minor": 100},
        )
    )
    rows.append(RollupAdd(program_id, "aff_b", date(2026, 2, 1), {"clicks": 0}))  # no change
    return rows


def test_add_many_equals_repeated_add(session: Session) -> None:
    # Given the same increments, one batch for a program, one call each for another
    batch, one_by_one = create_program(session).id, create_program(session).id

    service.add_many(session, _increments(batch))
    for row in _increments(one_by_one):
        service.add(
            session,
            program_id=one_by_one,
            affiliate_id=row.affiliate_id,
            day=row.day,
            increments=row.increments,
        )

    # Then every rollup table holds the same rows (several increments per key summed)
    got = _table_rows(session, batch)
    assert got == _table_rows(session, one_by_one)
    assert got["program_daily"][0][:3] == (date(2025, 12, 31), 1 + 4 + 7, 0 + 1 + 0)
    assert ("aff_b", "part", date(2026, 1, 1)) in [row[:3] for row in got["period"]]
    assert date(2026, 2, 1) not in [row[0] for row in got["program_daily"]]


def test_add_many_adds_to_rows_already_there(session: Session) -> None:
    program_id = create_program(session).id
    day = date(2026, 5, 20)
    service.add(
        session, program_id=program_id, affiliate_id="aff_a", day=day, increments={"clicks": 2}
    )

    service.add_many(
        session,
        [
            RollupAdd(program_id, "aff_a", day, {"clicks": 3}),
            RollupAdd(program_id, "aff_a", day + timedelta(days=1), {"clicks": 4}),
        ],
    )

    stats = service.stats(
        session, program_id=program_id, affiliate_id="aff_a", day_from=day, day_to=day
    )
    month = session.scalars(
        select(PeriodStats.clicks).where(
            PeriodStats.program_id == program_id, PeriodStats.grain == "month"
        )
    ).all()
    assert (stats.clicks, month) == (5, [9])


def test_an_unknown_figure_is_refused_and_nothing_is_written(session: Session) -> None:
    program_id = create_program(session).id

    with pytest.raises(ValueError, match="unknown rollup figure 'click'"):
        service.add_many(
            session,
            [
                RollupAdd(program_id, "aff_a", date(2026, 5, 20), {"clicks": 1}),
                RollupAdd(program_id, "aff_a", date(2026, 5, 20), {"click": 1}),
            ],
        )

    assert _table_rows(session, program_id) == {"daily": [], "program_daily": [], "period": []}


def test_concurrent_batches_on_the_same_rows_lose_nothing(runtime: Runtime) -> None:
    # Given a committed program, and two writers adding to the same rows (the
    # program's day, an affiliate's day, month, part and year) in opposite orders
    with transaction(runtime.sessions) as db:
        program_id = create_program(db).id
    day = date(2026, 6, 30)
    rows = [
        RollupAdd(program_id, f"aff_{n}", day + timedelta(days=n % 2), {"clicks": 1})
        for n in range(40)
    ]
    first_holds_its_rows = threading.Event()
    second_started = threading.Event()
    failures: list[BaseException] = []

    def first() -> None:
        try:
            with transaction(runtime.sessions) as db:
                service.add_many(db, rows)
                first_holds_its_rows.set()
                second_started.wait(timeout=10)
                clock.sleep(0.2)  # let the second writer reach the rows it must wait for
        except BaseException as error:
            failures.append(error)

    def second() -> None:
        try:
            first_holds_its_rows.wait(timeout=10)
            second_started.set()
            with transaction(runtime.sessions) as db:
                service.add_many(db, list(reversed(rows)))
        except BaseException as error:
            failures.append(error)

    # When both run at once
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then both committed and every increment counted once
    assert failures == []
    with runtime.sessions() as db:
        every_day = service.stats(
            db, program_id=program_id, affiliate_id=None, day_from=None, day_to=None
        )
        one = service.stats(
            db, program_id=program_id, affiliate_id="aff_3", day_from=None, day_to=None
        )
        years = db.scalars(
            select(func.sum(PeriodStats.clicks)).where(
                PeriodStats.program_id == program_id, PeriodStats.grain == "year"
            )
        ).one()
    assert (every_day.clicks, one.clicks, years) == (80, 2, 80)
