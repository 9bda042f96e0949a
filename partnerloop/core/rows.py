"""A row this transaction just inserted, put in the session without reading it back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, ColumnDefault, Table
from sqlalchemy.orm import Session, make_transient_to_detached

from partnerloop.core.db import Base

Model = TypeVar("Model", bound=Base)


def as_inserted(session: Session, model: type[Model], values: Mapping[str, Any]) -> Model:
    """The row this transaction just inserted with `values` (insert_if_absent said
    so), in the session as if read back (that was a SELECT per row): every column
    as a read returns it (times in UTC, JSON as decoded); one not given is its
    scalar default, else NULL. Only for tables without defaults the database
    fills in (server defaults, sequences, triggers)."""
    table: Table = model.__table__  # type: ignore[assignment]
    loaded: dict[str, Any] = {}
    for column in table.columns:
        if column.server_default is not None:
            raise ValueError(f"{table.name}.{column.key} is filled in by the database")
        if column.key in values:
            value = values[column.key]
        elif isinstance(column.default, ColumnDefault) and column.default.is_scalar:
            value = column.default.arg
        else:
            value = None
        if isinstance(value, datetime):
            value = value.astimezone(UTC)
        elif isinstance(column.type, JSON) and value is not None:
            value = json.loads(json.dumps(value))
        loaded[column.key] = value
    row = model(**loaded)
    make_transient_to_detached(row)
    session.add(row)
    return row
