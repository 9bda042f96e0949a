"""core/heap.py: serve's startup objects are frozen out of full collections."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from partnerloop.core import heap
from partnerloop.runtime import Runtime
from partnerloop.web.app import create_app


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen: the test process is not a
    server, and its cycles must stay collectable."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settle_freezes_what_is_alive_and_collects_the_garbage_first() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.disable()  # no automatic pass frees the cycle before settle does
    try:
        garbage = weakref.ref(Cycle())  # unreachable: only a collection frees it
        kept = [[n] for n in range(1000)]
        heap.settle()
    finally:
        gc.enable()
    assert gc.get_freeze_count() >= len(kept)
    assert garbage() is None


def test_the_later_freeze_takes_what_was_made_after_startup() -> None:
    gc.disable()  # no collection of the test process's heap while the objects are made
    try:
        timer = heap.settle_now_and_later(delay=0.5)
        at_startup = gc.get_freeze_count()
        made_later = [[n] for n in range(5000)]
        assert timer.is_alive()  # made before the later freeze, with time to spare
    finally:
        gc.enable()
    timer.join(timeout=5)
    assert gc.get_freeze_count() >= at_startup + len(made_later)


def test_serves_app_freezes_its_startup_and_cancels_the_later_freeze(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heap, "LATE_SETTLE_SECONDS", 0.5)
    app = create_app(runtime, run_worker=False, settle_heap=True)
    with TestClient(app, base_url=runtime.settings.public_url) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    made_after_shutdown = [[n] for n in range(5000)]
    time.sleep(1.0)
    assert gc.get_freeze_count() < frozen + len(made_after_shutdown)


def test_an_app_freezes_nothing_unless_asked(runtime: Runtime) -> None:
    app = create_app(runtime, run_worker=False)
    with TestClient(app, base_url=runtime.settings.public_url) as client:
        assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == 0
