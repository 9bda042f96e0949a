"""Numbers on the dashboard and in the weekly report, written the way the
reader's language writes them: English 1,234.56 and Dutch 1.234,56. Amounts
come from partnerloop.core.money (exact minor units, never floats); this only
places the separators."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from partnerloop.core.money import format_amount

_SEPARATORS = {"en": (",", "."), "nl": (".", ",")}  # thousands, decimal
NONE = "\u2013"  # an en dash: no figure (e.g. a rate without any unique click)


@dataclass(frozen=True)
class Formats:
    language: str
    currency: str

    def _place(self, plain: str) -> str:
        """'-1234567.89' -> '-1,234,567.89' (en) or '-1.234.567,89' (nl)."""
        thousands, decimal = _SEPARATORS.get(self.language, _SEPARATORS["en"])
        sign = "-" if plain.startswith("-") else ""
        whole, _, fraction = plain.lstrip("-").partition(".")
        groups: list[str] = []
        while len(whole) > 3:
            groups.insert(0, whole[-3:])
            whole = whole[:-3]
        groups.insert(0, whole)
        text = sign + thousands.join(groups)
        return f"{text}{decimal}{fraction}" if fraction else text

    def count(self, value: int) -> str:
        return self._place(str(value))

    def amount(self, minor: int) -> str:
        return self._place(format_amount(minor, self.currency))

    def money(self, minor: int) -> str:
        return f"{self.currency} {self.amount(minor)}"

    def percent(self, value: Decimal | None) -> str:
        return NONE if value is None else f"{self._place(format(value, 'f'))} %"

    def change(self, value: Decimal | None) -> str:
        if value is None:
            return NONE
        sign = "+" if value > 0 else ""
        return f"{sign}{self._place(format(value, 'f'))} %"
