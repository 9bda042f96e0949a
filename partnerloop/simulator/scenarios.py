"""The scenarios `partnerloop simulate` knows: a name, the shape of its orders,
its pace, and what goes wrong at the CRM while it runs."""

from __future__ import annotations

from dataclasses import dataclass

from partnerloop.simulator.plan import Shape

PEAK_FACTOR = 10


@dataclass(frozen=True)
class Knobs:
    """The scenario parameters given as flags."""

    orders: int = 40
    rate: float = 5.0  # orders a second (peak: ten times this)
    affiliates: int = 3
    failed_share: float = 0.3
    copies: int = 3
    outage_seconds: float = 20.0
    outage_mode: str = "refused"
    storm_seconds: float = 10.0


@dataclass(frozen=True)
class Scenario:
    name: str
    shape: Shape
    rate: float
    outage_seconds: float = 0.0
    outage_mode: str = "refused"
    storm_seconds: float = 0.0

    def describe(self) -> str:
        text = f"{self.shape.orders} orders at {self.rate:g}/s"
        if self.outage_seconds:
            text += f", CRM down ({self.outage_mode}) for {self.outage_seconds:g} s"
        if self.storm_seconds:
            text += f", CRM answering 429 for {self.storm_seconds:g} s"
        return text


DESCRIPTIONS = {
    "normal": "a normal day: clicks, paid orders, some coupons, partial refunds, repeat buyers",
    "peak": f"the same at {PEAK_FACTOR}x the rate (a newsletter, Black Friday)",
    "failed-payments": "a share of payments never completes: pending for good, or voided",
    "duplicates": "every webhook delivered 2 to --copies times, some orders re-sent under "
    "a new event id",
    "out-of-order": "orders/paid before orders/create, refunds before their order, "
    "updates newest first",
    "crm-outage": "the CRM is down (connection refused or 503) for N seconds from the start",
    "429-storm": "the CRM answers 429 (HubSpot's rate limit) to every call for N seconds",
}
NAMES = tuple(DESCRIPTIONS)


def build(name: str, knobs: Knobs) -> Scenario:
    base = Shape(orders=knobs.orders, affiliates=knobs.affiliates)
    if name == "normal":
        return Scenario(name, base, knobs.rate)
    if name == "peak":
        return Scenario(name, base, knobs.rate * PEAK_FACTOR)
    if name == "failed-payments":
        shape = Shape(
            orders=knobs.orders, affiliates=knobs.affiliates, failed_share=knobs.failed_share
        )
        return Scenario(name, shape, knobs.rate)
    if name == "duplicates":
        shape = Shape(
            orders=knobs.orders,
            affiliates=knobs.affiliates,
            duplicate_copies=max(2, knobs.copies),
            resend_share=0.3,
        )
        return Scenario(name, shape, knobs.rate)
    if name == "out-of-order":
        shape = Shape(
            orders=knobs.orders, affiliates=knobs.affiliates, out_of_order=True, refund_share=0.3
        )
        return Scenario(name, shape, knobs.rate)
    if name == "crm-outage":
        return Scenario(
            name,
            base,
            knobs.rate,
            outage_seconds=knobs.outage_seconds,
            outage_mode=knobs.outage_mode,
        )
    if name == "429-storm":
        return Scenario(name, base, knobs.rate, storm_seconds=knobs.storm_seconds)
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(NAMES)}")
