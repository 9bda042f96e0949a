"""Group commit: many callers' writes share one transaction, and each caller is
answered only after the commit that holds its write.

A commit costs an fsync (SQLite `synchronous=FULL`, PostgreSQL's WAL flush), a
few milliseconds on ordinary disks; one commit per request caps a server at a
few hundred writes a second however fast the rest is. The store
(web/store.py) gathers what arrives while it commits and writes it with
`commit_together` in one transaction, so at low traffic a write waits for one
small commit and at high traffic a commit carries hundreds.

`write(session, items)` returns one outcome per item, in order: a value for the
caller, or an exception instance for that caller alone (a per-item refusal such
as a bad signature, which must not fail the others). If the batch's transaction
itself fails, every item is tried again in a transaction of its own, so one
poisonous item fails only its own caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.core.db import transaction

log = logging.getLogger("partnerloop.groupcommit")

Item = TypeVar("Item")
Result = TypeVar("Result")

# One batch's write: an outcome per item, in order (a value, or an exception to raise).
Write = Callable[[Session, Sequence[Item]], Sequence["Result | BaseException"]]


def commit_together(
    sessions: sessionmaker[Session], write: Write[Item, Result], items: Sequence[Item]
) -> list[Result | BaseException]:
    """Write `items` in one transaction; if it fails, each item alone. One outcome
    per item, in order; an item whose own transaction failed gets the exception.
    A batch that met a connection the database had dropped is first tried once
    more as a whole (the store's engine does not ping before each batch)."""
    try:
        return _together(sessions, write, items)
    except DBAPIError as error:
        if not error.connection_invalidated:
            failure: Exception = error
        else:  # a restart, an idle timeout: SQLAlchemy has discarded the connection
            log.warning("the database connection was lost; trying the batch again")
            try:
                return _together(sessions, write, items)
            except Exception as again:
                failure = again
    except Exception as error:
        failure = error
    if len(items) == 1:
        return [failure]
    # One item may be the cause: each alone, so only its caller fails.
    log.error("a batch of %d writes failed; retrying each alone", len(items), exc_info=failure)
    outcomes: list[Result | BaseException] = []
    for item in items:
        try:
            with transaction(sessions) as session:
                outcomes.extend(write(session, [item]))
        except Exception as error:
            outcomes.append(error)
    return outcomes


def _together(
    sessions: sessionmaker[Session], write: Write[Item, Result], items: Sequence[Item]
) -> list[Result | BaseException]:
    with transaction(sessions) as session:
        outcomes = list(write(session, items))
    if len(outcomes) != len(items):
        raise ValueError(f"{len(outcomes)} outcomes for {len(items)} items")
    return outcomes
