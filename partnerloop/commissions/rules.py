"""Commission amounts: the pure arithmetic, no I/O.

A commission is always computed from the rule and the order's NET amount
(gross minus refunds so far) and rounded once (partnerloop.core.money's rule).
A percentage takes its rate of the net amount; a fixed amount is scaled by
the share of the order that was not refunded, so a half-refunded order keeps
half its fixed commission and a fully refunded one keeps nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from partnerloop.core.money import percentage_of, proportion_of


@dataclass(frozen=True, slots=True)
class Rule:
    type: str  # percentage | fixed
    value: Decimal  # percent for 'percentage', minor units for 'fixed'

    def stored_value(self) -> str:
        return str(self.value)

    @classmethod
    def from_stored(cls, type_: str, value: str) -> Rule:
        return cls(type=type_, value=Decimal(value))


def amount_for(rule: Rule, *, gross_minor: int, net_minor: int) -> int:
    if not 0 <= net_minor <= gross_minor:
        raise ValueError("net amount must lie between 0 and the gross amount")
    if rule.type == "percentage":
        return percentage_of(net_minor, rule.value)
    if rule.type == "fixed":
        return (
            proportion_of(int(rule.value), net_minor, gross_minor)
            if gross_minor
            else int(rule.value)
        )
    raise ValueError(f"unknown rule type {rule.type!r}")
