"""Money: integer minor units + ISO 4217 currency. Decimal only for rates.

THE ROUNDING RULE (the only one in partnerloop): an amount computed from a
rate or a proportion is worked out exactly in Decimal and rounded once, at the
end, to the currency's minor unit with ROUND_HALF_EVEN (banker's rounding:
halves go to the even neighbour, so over many commissions rounding neither
favours the merchant nor the affiliate). Amounts are never rounded twice:
after a partial refund a commission is recomputed from the rule and the net
order amount, not derived from the previously rounded commission.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext

# ISO 4217 active codes and their minor-unit exponents (ISO 4217 amendment list,
# 2025 edition). Fund and precious-metal codes (XAU, XDR, ...) are left out:
# nobody pays an affiliate in troy ounces.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR "
    "FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR "
    "KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV "
    "MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR "
    "SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH "
    "USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 0 for code in _EXPONENT_0.split()},
    **{code: 2 for code in _EXPONENT_2.split()},
    **{code: 3 for code in _EXPONENT_3.split()},
    **{code: 4 for code in _EXPONENT_4.split()},
}

# A ceiling well inside a signed 64-bit column; an order above it is a bug or an attack.
MAX_MINOR = 10**15

_AMOUNT_RE = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]+))?")
_RATE_RE = re.compile(r"(0|[1-9][0-9]*)(?:\.[0-9]+)?")
# Enough digits that amount x rate or amount x numerator is exact before the one
# rounding (the default 28 would round products of amounts near MAX_MINOR).
_EXACT_PRECISION = 80


class MoneyError(ValueError):
    """An amount or currency that cannot be used; `reason` is a user-facing sentence."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def check_currency(code: str) -> str:
    if code not in CURRENCY_EXPONENTS:
        raise MoneyError(
            f"{code!r} is not an ISO 4217 currency code (use three capital letters, e.g. EUR).",
            "unknown_currency",
        )
    return code


def exponent(currency: str) -> int:
    return CURRENCY_EXPONENTS[check_currency(currency)]


def parse_amount(text: str, currency: str) -> int:
    """'19.99' EUR -> 1999. Refuses signs, exponents, separators and excess decimals."""
    places = exponent(currency)
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise MoneyError(
            f'{text!r} is not an amount: write a non-negative decimal string like "19.99".',
            "invalid_amount",
        )
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > places:
        raise MoneyError(
            f"{currency} has {places} decimal place{'s' if places != 1 else ''}; "
            f"{text!r} has {len(fraction)}.",
            "invalid_amount",
        )
    minor: int = int(whole) * 10**places + int(fraction.ljust(places, "0") or "0")
    if minor > MAX_MINOR:
        raise MoneyError(f"{text!r} is larger than partnerloop accepts.", "amount_too_large")
    return minor


def format_amount(amount_minor: int, currency: str) -> str:
    """1999 EUR -> '19.99'; -50 EUR -> '-0.50'."""
    places = exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    digits = str(abs(amount_minor)).rjust(places + 1, "0")
    if places == 0:
        return sign + digits
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def parse_rate(text: str) -> Decimal:
    """A percentage such as '10' or '7.5' (meaning 7.5 %)."""
    if not _RATE_RE.fullmatch(text):
        raise MoneyError(
            f'{text!r} is not a percentage: write a number like "10" or "7.5".', "invalid_rate"
        )
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise MoneyError(f"{text!r} is not a number.", "invalid_rate") from None
    if not rate.is_finite() or rate < 0 or rate > 100:
        raise MoneyError("A percentage must be between 0 and 100.", "invalid_rate")
    if rate.as_tuple().exponent < -4:  # type: ignore[operator]
        raise MoneyError("A percentage may have at most 4 decimal places.", "invalid_rate")
    return rate


def round_minor(value: Decimal) -> int:
    """THE rounding rule: one ROUND_HALF_EVEN to whole minor units."""
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))


def percentage_of(amount_minor: int, rate_percent: Decimal) -> int:
    with localcontext(prec=_EXACT_PRECISION):
        return round_minor(Decimal(amount_minor) * rate_percent / Decimal(100))


def proportion_of(amount_minor: int, numerator: int, denominator: int) -> int:
    """amount * numerator / denominator, rounded once by the rule."""
    if denominator == 0:
        return 0
    with localcontext(prec=_EXACT_PRECISION):
        return round_minor(Decimal(amount_minor) * Decimal(numerator) / Decimal(denominator))
