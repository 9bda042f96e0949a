"""The click writer's group commit and the bulk insert under it."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from partnerloop.affiliates import service as affiliates
from partnerloop.analytics.models import DailyStats
from partnerloop.core.clock import day_of, utcnow
from partnerloop.core.db import transaction
from partnerloop.runtime import Runtime
from partnerloop.tracking import service as tracking
from partnerloop.tracking.models import Click
from partnerloop.tracking.service import ClickRecord, LinkTarget
from partnerloop.web import metrics
from partnerloop.web.clickwriter import ClickWriter
from partnerloop.web.store import Store, listen
from partnerloop.web.storelink import CLICKS, FRAME_HEAD, MAX_PAYLOAD
from tests.factories.affiliates import unique_email
from tests.factories.programs import create_program
from tests.factories.tracking import BROWSER_UA
from tests.support import aio


def _target(runtime: Runtime) -> LinkTarget:
    now = utcnow()
    with transaction(runtime.sessions) as session:
        program = create_program(session)
        signed = affiliates.sign_up(
            session,
            runtime.cipher,
            program_id=program.id,
            email=unique_email(),
            name="Writer Test",
            now=now,
        )
        affiliates.approve(
            session,
            runtime.cipher,
            affiliate_id=signed.affiliate.id,
            program_id=program.id,
            now=now,
        )
        link = tracking.create_link(
            session,
            program_id=program.id,
            affiliate_id=signed.affiliate.id,
            destination_url="https://shop.example.com/p/1",
            now=now,
        )
        code = link.code
    with runtime.sessions() as session:
        target = tracking.resolve_link(session, code)
    assert target is not None
    return target


def _click(target: LinkTarget, *, click_id: str | None = None, **extra: Any) -> ClickRecord:
    values: dict[str, Any] = {
        "id": click_id or tracking.new_click_id(),
        "program_id": target.program_id,
        "link_id": target.link_id,
        "affiliate_id": target.affiliate_id,
        "created_at": utcnow(),
        "ip": "203.0.113.9",
        "user_agent": BROWSER_UA,
        "referrer": "https://blog.example/review",
        "landing_url": target.destination_url,
        "subs": (None, None, None, None, None),
        "is_unique": True,
    }
    values.update(extra)
    return ClickRecord(**values)


def _stored(runtime: Runtime, link_id: str) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).where(Click.link_id == link_id)) or 0)


def _rollup(runtime: Runtime, target: LinkTarget) -> tuple[int, int]:
    with runtime.sessions() as session:
        row = session.execute(
            select(
                func.coalesce(func.sum(DailyStats.clicks), 0),
                func.coalesce(func.sum(DailyStats.unique_clicks), 0),
            ).where(
                DailyStats.program_id == target.program_id,
                DailyStats.affiliate_id == target.affiliate_id,
            )
        ).one()
    return int(row[0]), int(row[1])


def test_many_waiting_clicks_share_commits_and_all_are_stored(runtime: Runtime) -> None:
    target = _target(runtime)
    writer = ClickWriter.in_thread(runtime)
    commits_before = metrics.CLICK_BATCH_SIZE._sum.get()
    count_before = _histogram_count(metrics.CLICK_BATCH_SIZE)

    async def burst() -> list[bool]:
        try:
            # Half of them from a returning browser: counted, but not as unique.
            return await asyncio.gather(
                *(writer.record(_click(target, is_unique=n % 2 == 0)) for n in range(300))
            )
        finally:
            await writer.close()

    answers = aio.run(burst)

    assert answers == [True] * 300
    assert _stored(runtime, target.link_id) == 300
    assert _rollup(runtime, target) == (300, 150)
    commits = _histogram_count(metrics.CLICK_BATCH_SIZE) - count_before
    assert metrics.CLICK_BATCH_SIZE._sum.get() - commits_before == 300
    assert 1 <= commits < 300, "waiting clicks were grouped into fewer commits"


def _histogram_count(histogram: Any) -> float:
    return sum(
        sample.value
        for family in histogram.collect()
        for sample in family.samples
        if sample.name.endswith("_count")
    )


def test_a_failed_commit_answers_false_and_the_next_batch_is_stored(runtime: Runtime) -> None:
    target = _target(runtime)
    taken = tracking.new_click_id()
    with transaction(runtime.sessions) as session:
        tracking.write_clicks(session, runtime.cipher, [_click(target, click_id=taken)])
    writer = ClickWriter.in_thread(runtime)

    async def scenario() -> tuple[bool, bool]:
        try:
            # The same id again: the batch's INSERT fails on the primary key.
            failed = await writer.record(_click(target, click_id=taken))
            after = await writer.record(_click(target))
            return failed, after
        finally:
            await writer.close()

    failed, after = aio.run(scenario)

    assert failed is False  # the shopper is redirected without a click id
    assert after is True  # a fresh connection, a good batch
    assert _stored(runtime, target.link_id) == 2  # the first one and the good one
    assert _rollup(runtime, target) == (2, 2)  # the failed batch left no count behind


def test_close_commits_what_is_queued(runtime: Runtime) -> None:
    target = _target(runtime)
    writer = ClickWriter.in_thread(runtime)

    async def scenario() -> list[bool]:
        pending = [asyncio.ensure_future(writer.record(_click(target))) for _ in range(25)]
        await asyncio.sleep(0)  # queued, not yet answered
        await writer.close()
        return [await answer for answer in pending]

    assert aio.run(scenario) == [True] * 25
    assert _stored(runtime, target.link_id) == 25


def test_bulk_insert_stores_what_an_orm_insert_stores(runtime: Runtime) -> None:
    """The fast path hands the driver the same values the ORM would (dates in
    SQLite's text form, booleans as the backend keeps them)."""
    target = _target(runtime)
    moment = datetime(2026, 11, 24, 23, 59, 59, 0, tzinfo=UTC)  # no microseconds
    via_orm, via_bulk = tracking.new_click_id(), tracking.new_click_id()
    template = _click(target, created_at=moment, subs=("a", None, "c", None, None))
    with transaction(runtime.sessions) as session:
        session.add(
            Click(
                **{
                    name: value
                    for name, value in zip(
                        tracking._CLICK_INSERT.columns,
                        tracking.click_row(template._replace(id=via_orm), runtime.cipher),
                        strict=True,
                    )
                }
            )
        )
    with transaction(runtime.sessions) as session:
        tracking.write_clicks(session, runtime.cipher, [template._replace(id=via_bulk)])

    columns = [c for c in tracking._CLICK_INSERT.columns if c not in ("id", "ip_enc")]
    with runtime.engine.connect() as connection:
        raw = {
            row[0]: row[1:]
            for row in connection.execute(
                text(f"SELECT id, {', '.join(columns)} FROM clicks WHERE id IN (:a, :b)"),  # noqa: S608
                {"a": via_orm, "b": via_bulk},
            )
        }
    assert raw[via_orm] == raw[via_bulk]
    with runtime.sessions() as session:
        stored = session.get(Click, via_bulk)
        assert stored is not None
        assert stored.created_at == moment
        assert stored.is_bot is False
        assert stored.is_unique is True
        assert runtime.cipher.decrypt(stored.ip_enc or "", field=tracking.IP_FIELD) == "203.0.113.9"
    # and a date range over the stored text still finds it (SQLite compares strings)
    with runtime.sessions() as session:
        found = session.scalar(
            select(func.count()).where(
                Click.id == via_bulk,
                Click.created_at >= moment,
                Click.created_at < moment + timedelta(seconds=1),
            )
        )
    assert found == 1
    assert day_of(moment).isoformat() == "2026-11-24"


def test_batches_of_every_size_are_stored(runtime: Runtime) -> None:
    """Multi-row statements are split in powers of two: odd sizes and more than
    the largest statement all arrive, each once."""
    target = _target(runtime)
    total = 0
    for size in (1, 2, 3, 7, 64, 513, 1100):
        clicks = [_click(target) for _ in range(size)]
        with transaction(runtime.sessions) as session:
            tracking.write_clicks(session, runtime.cipher, clicks)
        total += size
        assert _stored(runtime, target.link_id) == total
    assert _rollup(runtime, target)[0] == total


def _store_thread(runtime: Runtime, path: Path) -> tuple[threading.Event, threading.Thread]:
    """A click store listening at `path`, as serve's process runs it, in a thread."""
    listener = listen(path)
    stop = threading.Event()
    server = Store(runtime.engine, runtime.cipher, batch_max=100)

    def run() -> None:
        try:
            server.serve(stop=stop, listener=listener)
        finally:
            listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return stop, thread


def test_a_peer_sending_garbage_is_hung_up_on_and_the_others_go_on(runtime: Runtime) -> None:
    target = _target(runtime)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "store.sock"
        stop, thread = _store_thread(runtime, path)
        try:
            garbage = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            garbage.connect(str(path))
            garbage.sendall(FRAME_HEAD.pack(5, 1, CLICKS) + b"\xff\xfe\xfd\xfc\xfb")  # not marshal
            garbage.settimeout(10)
            assert garbage.recv(100) == b""  # hung up on, nothing acknowledged
            huge = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            huge.connect(str(path))
            huge.sendall(FRAME_HEAD.pack(MAX_PAYLOAD + 1, 1, CLICKS))
            huge.settimeout(10)
            assert huge.recv(100) == b""

            writer = ClickWriter.to_socket(path)

            async def scenario() -> list[bool]:
                try:
                    return await asyncio.gather(*(writer.record(_click(target)) for _ in range(5)))
                finally:
                    await writer.close()

            assert aio.run(scenario) == [True] * 5
        finally:
            stop.set()
            thread.join(timeout=10)
    assert _stored(runtime, target.link_id) == 5


def test_without_a_store_clicks_are_answered_false_and_then_it_reconnects(
    runtime: Runtime,
) -> None:
    target = _target(runtime)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "store.sock"
        writer = ClickWriter.to_socket(path)
        stop, thread = _store_thread(runtime, path)

        async def scenario() -> list[bool]:
            nonlocal stop, thread
            answers = [await writer.record(_click(target))]
            stop.set()  # the store goes (a restart, say)
            await asyncio.to_thread(thread.join, 10)
            answers.append(await writer.record(_click(target)))  # without a click id
            answers.append(await writer.record(_click(target)))
            stop, thread = _store_thread(runtime, path)  # back
            answers.append(await writer.record(_click(target)))
            await writer.close()
            return answers

        try:
            assert aio.run(scenario) == [True, False, False, True]
        finally:
            stop.set()
            thread.join(timeout=10)
    assert _stored(runtime, target.link_id) == 2
