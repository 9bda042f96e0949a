"""CSV downloads of admin tables, safe to open in a spreadsheet.

CSV injection (OWASP "CSV Injection"): a cell that starts with = + - @ (or a
tab or carriage return, which some spreadsheets skip before looking) is read
as a formula, so an affiliate named "=HYPERLINK(...)" could run one on a staff
member's machine. Such text cells get a leading apostrophe, which spreadsheets
show as plain text. Numbers (ints, Decimals, and amounts already written as
text like "-1.50") are written as they are: a negative amount is data, not a
formula.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal

from fastapi.responses import Response

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")

Cell = str | int | Decimal | date | datetime | None


def safe_cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date | int | Decimal):
        return str(value)
    if value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 line ends
    writer.writerow([safe_cell(name) for name in header])
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return out.getvalue()


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Response:
    return Response(
        csv_text(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            # Personal data (names, e-mails): never kept in a shared cache.
            "Cache-Control": "no-store",
        },
    )
