"""A worker killed in the middle of a job: the job runs again and its effect happens once.

Real `partnerloop worker` processes on the test database, stopped at named
fault points (partnerloop.core.faults) and killed with SIGKILL there.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from partnerloop.analytics.models import DailyStats
from partnerloop.commissions.models import Commission
from partnerloop.orders.models import Conversion
from partnerloop.runtime import Runtime
from partnerloop.sync.models import InboundEvent, OutboxMessage
from tests.conftest import Backend, Server, drain
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.shopify import deliver, paid_order, setup
from tests.factories.tracking import click, create_link_api
from tests.processes.conftest import (
    Proc,
    Processes,
    backend_env,
    pg_backend_state,
    unique,
    wait_until,
    with_application_name,
    worker_pid,
    write_lock_held,
)
from tests.support.http import Reply, ScriptedServer

pytestmark = pytest.mark.slow

LEASE_SECONDS = 3.0
ORDER_AMOUNT = "123.45"
ORDER_AMOUNT_MINOR = 12345
# 10 % of 123.45 is 12.345: rounded half-even to the cent, 12.34
COMMISSION_MINOR = 1234
KILLED = -signal.SIGKILL
FAULT_EXIT_CODE = 70  # partnerloop.core.faults: "exit" ends the process with os._exit(70)


@dataclass(frozen=True)
class Stored:
    program_id: str
    affiliate_id: str
    click_id: str
    order_id: str
    event_id: str


def store_postback(server: Server) -> Stored:
    """A program paying 10 %, an approved affiliate's click, and its order's postback, stored."""
    with server.client() as api:
        program = create_program_api(api, commission={"type": "percentage", "value": "10"})
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])
        click_id = click(api, link["code"])
        drain(server.runtime)  # the setup's own jobs (affiliate.approved): only the order's remain
        order_id = unique("order")
        response = api.get(
            "/postback",
            params={
                "token": program["postback_token"],
                "order_id": order_id,
                "amount": ORDER_AMOUNT,
                "click_id": click_id,
            },
        )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    return Stored(program["id"], affiliate["id"], click_id, order_id, response.json()["event_id"])


def start_worker(
    processes: Processes,
    backend: Backend,
    *,
    faults: str = "",
    lease_seconds: float = LEASE_SECONDS,
    max_attempts: int = 10,
) -> tuple[Proc, str]:
    """A `partnerloop worker`; returns it and the application name its connections carry."""
    application_name = unique("plworker")
    env = backend_env(backend)
    env.update(
        PARTNERLOOP_DATABASE_URL=with_application_name(backend.database_url, application_name),
        PARTNERLOOP_WORKER_LEASE_SECONDS=str(lease_seconds),
        PARTNERLOOP_WORKER_POLL_SECONDS="0.1",
        PARTNERLOOP_WORKER_MAX_ATTEMPTS=str(max_attempts),
        PARTNERLOOP_FAULTS=faults,
    )
    return processes.start("worker", env=env), application_name


def event_of(observer: sessionmaker[Session], event_id: str) -> InboundEvent:
    with observer() as db:
        event = db.get(InboundEvent, event_id)
        assert event is not None
        return event


def in_state(observer: sessionmaker[Session], event_id: str, state: str) -> InboundEvent | None:
    event = event_of(observer, event_id)
    return event if event.state == state else None


def claimed_by(proc: Proc, observer: sessionmaker[Session], event_id: str) -> InboundEvent | None:
    if proc.poll() is not None:
        pytest.fail(f"the worker exited with {proc.poll()}; {proc.describe()}")
    event = event_of(observer, event_id)
    return event if event.locked_by is not None else None


def wait_inside_job_transaction(backend: Backend, runtime: Runtime, application_name: str) -> None:
    """Wait until the worker has written the job's effects and marked it done, uncommitted:
    the job.before_commit fault point."""
    if backend.name == "sqlite":
        # After the claim's commit, the only writer is the job's transaction.
        wait_until(
            lambda: write_lock_held(backend.database_url),
            what="the worker's job transaction to take the write lock",
        )
        time.sleep(0.5)  # the handler takes milliseconds; the fault sleeps 60 s
        assert write_lock_held(backend.database_url)
        return

    def at_fault() -> bool:
        # mark_done's UPDATE (the one that sets handled_at) is the job's last statement.
        return any(
            state == "idle in transaction"
            and query.startswith("UPDATE inbound_events")
            and "handled_at" in query
            for state, query in pg_backend_state(runtime.engine, application_name)
        )

    wait_until(at_fault, what="the worker to reach job.before_commit")


def counts(observer: sessionmaker[Session], stored: Stored) -> dict[str, object]:
    with observer() as db:
        conversions = db.scalars(
            select(Conversion).where(
                Conversion.program_id == stored.program_id,
                Conversion.order_id == stored.order_id,
            )
        ).all()
        commissions = db.scalars(
            select(Commission).where(Commission.program_id == stored.program_id)
        ).all()
        outbox = db.scalars(
            select(OutboxMessage.topic)
            .where(OutboxMessage.program_id == stored.program_id)
            .order_by(OutboxMessage.topic)
        ).all()
        stats = db.execute(
            select(
                func.coalesce(func.sum(DailyStats.clicks), 0),
                func.coalesce(func.sum(DailyStats.conversions), 0),
                func.coalesce(func.sum(DailyStats.revenue_minor), 0),
                func.coalesce(func.sum(DailyStats.commission_pending_minor), 0),
            ).where(DailyStats.program_id == stored.program_id)
        ).one()
    return {
        "conversions": [
            (c.amount_minor, c.currency, c.affiliate_id, c.attribution, c.click_id, c.source)
            for c in conversions
        ],
        "commissions": [
            (c.order_id, c.affiliate_id, c.amount_minor, c.currency, c.state) for c in commissions
        ],
        "outbox": list(outbox),
        "stats": {
            "clicks": int(stats[0]),
            "conversions": int(stats[1]),
            "revenue_minor": int(stats[2]),
            "commission_pending_minor": int(stats[3]),
        },
    }


def effect_once(stored: Stored) -> dict[str, object]:
    """What one run of the postback job leaves behind, and nothing more."""
    return {
        "conversions": [
            (ORDER_AMOUNT_MINOR, "EUR", stored.affiliate_id, "click", stored.click_id, "postback")
        ],
        "commissions": [(stored.order_id, stored.affiliate_id, COMMISSION_MINOR, "EUR", "pending")],
        "outbox": ["affiliate.approved", "commission.created", "conversion.created"],
        "stats": {
            "clicks": 1,
            "conversions": 1,
            "revenue_minor": ORDER_AMOUNT_MINOR,
            "commission_pending_minor": COMMISSION_MINOR,
        },
    }


NO_EFFECT_STATS = {"clicks": 1, "conversions": 0, "revenue_minor": 0, "commission_pending_minor": 0}


def test_worker_killed_before_commit_job_runs_again_once(
    backend: Backend,
    quiet_queue: Runtime,
    server: Server,
    observer: sessionmaker[Session],
    processes: Processes,
) -> None:
    # Given a postback in the inbox and a worker that stops right before committing its job
    stored = store_postback(server)
    crashing, application_name = start_worker(
        processes, backend, faults="job.before_commit=sleep:60"
    )
    claimed = wait_until(
        lambda: claimed_by(crashing, observer, stored.event_id), what="the worker to claim"
    )
    assert (claimed.state, claimed.attempts, worker_pid(claimed.locked_by)) == (
        "pending",
        1,
        crashing.pid,
    )
    wait_inside_job_transaction(backend, quiet_queue, application_name)

    # When the worker is killed there
    assert crashing.kill() == KILLED

    # Then nothing of the job remains: its transaction died with it
    assert counts(observer, stored) == {
        "conversions": [],
        "commissions": [],
        "outbox": ["affiliate.approved"],
        "stats": NO_EFFECT_STATS,
    }
    event = event_of(observer, stored.event_id)
    assert (event.state, event.attempts, event.handled_at) == ("pending", 1, None)

    # When a healthy worker starts
    healthy, _ = start_worker(processes, backend)

    # Then it takes the job over once the lease ran out, and the effect happens once
    processed = wait_until(
        lambda: in_state(observer, stored.event_id, "processed"), what="the event to be processed"
    )
    assert (processed.attempts, processed.locked_by, processed.last_error) == (2, None, None)
    assert healthy.poll() is None, healthy.describe()
    assert counts(observer, stored) == effect_once(stored)


def test_worker_killed_after_commit_job_does_not_run_again(
    backend: Backend,
    quiet_queue: Runtime,
    server: Server,
    observer: sessionmaker[Session],
    processes: Processes,
) -> None:
    # Given a worker that stops right after committing a postback's job
    stored = store_postback(server)
    crashing, _ = start_worker(processes, backend, faults="job.after_commit=sleep:60")
    wait_until(
        lambda: event_of(observer, stored.event_id).state == "processed",
        what="the event to be processed",
    )
    claimed_at = time.monotonic()  # no earlier than the claim: its lease ends before + 3 s

    # When it is killed there and a healthy worker runs past the lease
    assert crashing.kill() == KILLED
    healthy, _ = start_worker(processes, backend)
    # The healthy worker is running jobs: it delivers the events the job published.
    wait_until(
        lambda: _outbox_states(observer, stored.program_id) == ["delivered"] * 3,
        what="the outbox to be delivered",
    )
    time.sleep(max(0.0, claimed_at + LEASE_SECONDS + 2.0 - time.monotonic()))

    # Then the committed job is not run a second time
    assert healthy.poll() is None, healthy.describe()
    event = event_of(observer, stored.event_id)
    assert (event.state, event.attempts, event.locked_by, event.last_error) == (
        "processed",
        1,
        None,
        None,
    )
    assert counts(observer, stored) == effect_once(stored)


def _outbox_states(observer: sessionmaker[Session], program_id: str) -> list[str]:
    with observer() as db:
        return list(
            db.scalars(
                select(OutboxMessage.state)
                .where(OutboxMessage.program_id == program_id)
                .order_by(OutboxMessage.id)
            )
        )


def test_job_that_kills_every_worker_is_dead_lettered(
    backend: Backend,
    quiet_queue: Runtime,
    server: Server,
    observer: sessionmaker[Session],
    processes: Processes,
) -> None:
    # Given a postback whose job crashes every worker that runs it, and two attempts allowed
    stored = store_postback(server)
    crashes: list[int] = []
    current: Proc | None = None

    def dead() -> bool:
        nonlocal current
        if current is not None and current.poll() is not None:
            crashes.append(current.wait(timeout=5))
            current = None
        if event_of(observer, stored.event_id).state == "dead":
            return True
        if current is None:
            current, _ = start_worker(
                processes, backend, faults="job.before_commit=exit", lease_seconds=1, max_attempts=2
            )
        return False

    # When workers are restarted each time one dies
    wait_until(dead, interval=0.1, what="the event to be dead-lettered")

    # Then after two crashed attempts it is dead-lettered, with the reason, and had no effect;
    # the worker that dead-lettered it did not run it a third time
    assert crashes == [FAULT_EXIT_CODE, FAULT_EXIT_CODE]
    assert current is not None
    assert current.poll() is None, current.describe()
    event = event_of(observer, stored.event_id)
    assert (event.state, event.attempts, event.locked_by, event.handled_at) == (
        "dead",
        2,
        None,
        None,
    )
    assert event.last_error == ("gave up after 2 attempts; the last worker stopped mid-job")
    assert counts(observer, stored) == {
        "conversions": [],
        "commissions": [],
        "outbox": ["affiliate.approved"],
        "stats": NO_EFFECT_STATS,
    }


def test_api_reads_answer_while_a_worker_is_inside_a_job(
    backend: Backend,
    quiet_queue: Runtime,
    server: Server,
    processes: Processes,
) -> None:
    # Given a worker paused inside a job's transaction (a slow job)
    stored = store_postback(server)
    paused, application_name = start_worker(processes, backend, faults="job.before_commit=sleep:60")
    wait_inside_job_transaction(backend, quiet_queue, application_name)

    # When the API is asked to read meanwhile
    answers = []
    with server.client() as api:
        for path, params in (
            ("/readyz", {}),
            ("/api/v1/conversions", {"program_id": stored.program_id}),
        ):
            started = time.monotonic()
            try:
                status: int | str = api.get(path, params=params, timeout=3.0).status_code
            except httpx.TimeoutException:
                status = "timed out"
            answers.append((path, status, time.monotonic() - started < 2.0))

    # Then it answers at once from what is committed
    assert answers == [("/readyz", 200, True), ("/api/v1/conversions", 200, True)]
    assert paused.poll() is None, paused.describe()


def store_shop_webhook(server: Server) -> Stored:
    """A program paying 10 %, an approved affiliate's click, and a signed Shopify
    orders/paid webhook for an order that came from it, stored."""
    with server.client() as api:
        program, connector = setup(api)
        affiliate = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], affiliate["id"])
        click_id = click(api, link["code"])
        drain(server.runtime)  # the setup's own jobs (affiliate.approved): only the order's remain
        order_id = str(int(time.time() * 1000))
        body = json.dumps(
            paid_order(int(order_id), landing_site=f"/p/1?plclid={click_id}")
        ).encode()
        response = deliver(api, connector, "orders/paid", body, event_id=unique("shop-event"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    return Stored(program["id"], affiliate["id"], click_id, order_id, response.json()["event_id"])


def test_worker_killed_inside_a_shop_webhook_job_applies_the_order_once(
    backend: Backend,
    quiet_queue: Runtime,
    server: Server,
    observer: sessionmaker[Session],
    processes: Processes,
) -> None:
    # Given a Shopify webhook in the inbox and a worker that stops before committing its job
    stored = store_shop_webhook(server)
    crashing, application_name = start_worker(
        processes, backend, faults="job.before_commit=sleep:60"
    )
    wait_until(lambda: claimed_by(crashing, observer, stored.event_id), what="the worker to claim")
    wait_inside_job_transaction(backend, quiet_queue, application_name)

    # When it is killed there and a healthy worker takes over
    assert crashing.kill() == KILLED
    assert counts(observer, stored)["conversions"] == []
    start_worker(processes, backend)
    processed = wait_until(
        lambda: in_state(observer, stored.event_id, "processed"), what="the event to be processed"
    )

    # Then the order, its commission and the rollup exist once: 10 % of the
    # commission base 404.95 is 40.495, half-even 40.50
    assert processed.attempts == 2
    assert counts(observer, stored) == {
        "conversions": [(40495, "USD", stored.affiliate_id, "click", stored.click_id, "shopify")],
        "commissions": [(stored.order_id, stored.affiliate_id, 4050, "USD", "pending")],
        "outbox": ["affiliate.approved", "commission.created", "conversion.created"],
        "stats": {
            "clicks": 1,
            "conversions": 1,
            "revenue_minor": 40495,
            "commission_pending_minor": 4050,
        },
    }


@pytest.mark.parametrize("customers", [1, 3], ids=["one-contact", "a-batch-of-three"])
def test_worker_killed_after_the_crm_accepted_resends_without_a_duplicate_contact(
    customers: int,
    backend: Backend,
    quiet_queue: Runtime,
    server: Server,
    observer: sessionmaker[Session],
    processes: Processes,
) -> None:
    # Given sales whose customers go to HubSpot together in one batch call, and a
    # worker that dies right after HubSpot accepted it, before recording anything
    hubspot = ScriptedServer([], then=Reply(200, {"content-type": "application/json"}, b"{}"))
    emails = sorted(f"{unique(f'batch{n}')}@example.com" for n in range(customers))
    with hubspot.running():
        with server.client() as api:
            program = create_program_api(api)
            connector = api.post(
                "/api/v1/connectors",
                json={
                    "program_id": program["id"],
                    "kind": "hubspot",
                    "settings": {"api_base_url": hubspot.url},
                    "credentials": {"access_token": "pat-crash"},
                },
            ).json()
            for email in emails:
                api.post(
                    "/api/v1/conversions",
                    json={
                        "program_id": program["id"],
                        "order_id": unique("batch-order"),
                        "amount": "20.00",
                        "currency": "EUR",
                        "customer_email": email,
                    },
                ).raise_for_status()
        crashing, _ = start_worker(processes, backend, faults="delivery.after_send=exit")
        wait_until(lambda: crashing.poll() is not None, what="the worker to die after sending")

        # When a healthy worker takes over once the leases ran out
        start_worker(processes, backend)

        def all_delivered() -> list[OutboxMessage] | None:
            with observer() as db:
                messages = list(
                    db.scalars(
                        select(OutboxMessage).where(OutboxMessage.destination_id == connector["id"])
                    )
                )
            return messages if {m.state for m in messages} == {"delivered"} else None

        messages = wait_until(all_delivered, what="the batch to be recorded")

    # Then nothing was lost: the whole batch went again in one call and every
    # message is recorded once; no duplicate contact: each is upserted by e-mail
    assert crashing.poll() == FAULT_EXIT_CODE
    assert [m.attempts for m in messages] == [2] * customers
    bodies = [r.json() for r in hubspot.received]
    assert len(bodies) == 2
    assert sorted(i["id"] for i in bodies[0]["inputs"]) == emails
    assert bodies[0] == bodies[1]
