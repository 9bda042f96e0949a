"""Who a customer is: found by the shop's id, else by e-mail; created on first
sight. A new customer, conversion or commission reads as stored."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from partnerloop.core.clock import utcnow
from partnerloop.orders import service as orders
from partnerloop.orders.models import Conversion, Customer
from partnerloop.runtime import Runtime
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.orders import report_order
from tests.factories.programs import create_program, create_program_api
from tests.factories.tracking import click, create_link_api


def _find(
    session: Session, runtime: Runtime, program_id: str, *, email: str | None, shop_id: str | None
) -> Customer | None:
    return orders.find_or_create_customer(
        session,
        runtime.cipher,
        program_id=program_id,
        email=email,
        external_id=shop_id,
        now=utcnow(),
        name="Ada",
    )


def _count(session: Session, program_id: str) -> int:
    return int(session.scalar(select(func.count()).where(Customer.program_id == program_id)) or 0)


def test_a_customer_known_by_e_mail_who_comes_with_a_shop_id_gets_that_id(
    session: Session, runtime: Runtime
) -> None:
    program = create_program(session)
    by_email = _find(session, runtime, program.id, email="ada@example.com", shop_id=None)

    with_id = _find(session, runtime, program.id, email="ADA@example.com", shop_id="shop-1")
    again = _find(session, runtime, program.id, email=None, shop_id="shop-1")

    assert by_email is not None
    assert with_id is by_email
    assert again is by_email
    assert by_email.external_id == "shop-1"
    assert _count(session, program.id) == 1


def test_a_second_shop_account_with_the_same_address_is_a_customer_of_its_own(
    session: Session, runtime: Runtime
) -> None:
    program = create_program(session)
    first = _find(session, runtime, program.id, email="bo@example.com", shop_id="shop-1")

    second = _find(session, runtime, program.id, email="bo@example.com", shop_id="shop-2")
    found_again = _find(session, runtime, program.id, email="bo@example.com", shop_id="shop-2")

    assert first is not None
    assert second is not None
    assert second.id != first.id
    assert found_again is second
    assert (first.external_id, second.external_id) == ("shop-1", "shop-2")
    # The e-mail index stays with the first account.
    assert first.email_index is not None
    assert second.email_index is None
    assert _count(session, program.id) == 2


def test_a_new_customer_reads_as_stored(session: Session, runtime: Runtime) -> None:
    program = create_program(session)
    created = _find(session, runtime, program.id, email="cy@example.com", shop_id="shop-9")
    assert created is not None
    created_id = created.id
    shown = {c.key: getattr(created, c.key) for c in Customer.__table__.columns}

    session.expunge_all()
    stored = session.get_one(Customer, created_id)

    assert shown == {c.key: getattr(stored, c.key) for c in Customer.__table__.columns}
    assert (stored.external_id, stored.affiliate_id, stored.bound_at) == ("shop-9", None, None)


def test_a_new_conversion_reads_as_stored(session: Session, runtime: Runtime) -> None:
    # Times in another zone and JSON items come back as a read returns them.
    program = create_program(session)
    berlin = timezone(timedelta(hours=1))
    recorded = orders.record_conversion(
        session,
        runtime.cipher,
        orders.OrderInput(
            program_id=program.id,
            order_id="as-stored-1",
            amount_minor=12_345,
            currency="EUR",
            source="api",
            customer_email="dee@example.com",
            items=[{"sku": "A-1", "quantity": 2, "amount": "61.72", "tags": ("x", "y")}],
            ordered_at=datetime(2026, 11, 20, 0, 30, tzinfo=berlin),
            source_updated_at=datetime(2026, 11, 20, 0, 45, tzinfo=berlin),
        ),
        now=utcnow(),
    )
    conversion = recorded.conversion
    shown = {c.key: getattr(conversion, c.key) for c in Conversion.__table__.columns}
    shown_times = [conversion.ordered_at.isoformat(), conversion.created_at.isoformat()]

    session.expunge_all()
    stored = session.get_one(Conversion, conversion.id)

    assert shown == {c.key: getattr(stored, c.key) for c in Conversion.__table__.columns}
    assert shown_times == [stored.ordered_at.isoformat(), stored.created_at.isoformat()]
    assert stored.ordered_at.isoformat() == "2026-11-19T23:30:00+00:00"
    assert stored.items == [{"sku": "A-1", "quantity": 2, "amount": "61.72", "tags": ["x", "y"]}]
    assert (stored.status, stored.refunded_minor, stored.is_renewal) == ("paid", 0, False)


def test_a_new_commission_reads_as_stored(server: Server) -> None:
    # The order's answer shows the commission as made in its transaction; a later
    # read of it shows the same.
    with server.client() as api:
        program = create_program_api(api)
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])
        order = report_order(
            api, program["id"], "as-stored-c1", "123.45", click_id=click(api, link["code"])
        )
        [made] = order["commissions"]
        read = api.get(f"/api/v1/commissions/{made['id']}")

    assert read.status_code == 200
    assert made == {key: read.json()[key] for key in made}
    assert (made["amount"], made["state"]) == ("12.34", "pending")
