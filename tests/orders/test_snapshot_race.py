"""Two states of one new order applied at the same time by two workers: the
one that loses the race to record the order applies its state on top, instead
of failing (PostgreSQL; on SQLite the writer lock makes them take turns)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.orders import service as orders
from partnerloop.orders.snapshots import OrderSnapshot, apply_order
from partnerloop.runtime import Runtime
from tests.factories.programs import create_program


def _state(order_id: str, *, status: str, amount: int, minute: int) -> OrderSnapshot:
    return OrderSnapshot(
        order_id=order_id,
        currency="EUR",
        subtotal_minor=amount,
        total_minor=amount,
        status=status,
        ordered_at=datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
        updated_at=datetime(2026, 11, 20, 9, minute, tzinfo=UTC),
    )


def test_two_states_of_a_new_order_at_once_end_in_the_newest(runtime: Runtime) -> None:
    with transaction(runtime.sessions) as db:
        program = create_program(db)
    order_id = f"race-{utcnow().timestamp()}"
    inserted = threading.Event()
    outcomes: dict[str, str] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction(runtime.sessions) as db:
                applied = apply_order(
                    db, runtime.cipher, program_id=program.id, source="shopify",
                    connector_id=None, snapshot=_state(order_id, status="pending", amount=1000, minute=1),
                    now=utcnow(),
                )  # fmt: skip
                outcomes["first"] = applied.outcome
                inserted.set()
                time.sleep(0.5)  # hold the uncommitted order while the second arrives
        except BaseException as error:
            errors.append(error)
            inserted.set()

    def second() -> None:
        inserted.wait(10)
        try:
            with transaction(runtime.sessions) as db:
                applied = apply_order(
                    db, runtime.cipher, program_id=program.id, source="shopify",
                    connector_id=None, snapshot=_state(order_id, status="paid", amount=1200, minute=2),
                    now=utcnow(),
                )  # fmt: skip
                outcomes["second"] = applied.outcome
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert outcomes == {"first": "created", "second": "updated"}
    with runtime.sessions() as db:
        conversion = orders.find_conversion(db, program_id=program.id, order_id=order_id)
        assert conversion is not None
        assert (conversion.status, conversion.amount_minor) == ("paid", 1200)
