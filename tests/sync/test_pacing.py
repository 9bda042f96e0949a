"""sync.pacing: the worker inside serve gives way while serve reports traffic."""

from __future__ import annotations

import time

import pytest

from partnerloop.sync.pacing import BUSY_WINDOW_SECONDS, MAX_REST_SECONDS, Pacer, share_of_nice


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_share_follows_the_kernels_nice_weights() -> None:
    assert share_of_nice(0) == 1.0
    assert share_of_nice(10) == pytest.approx(1 / (1 + 1.25**10))  # about a tenth
    assert share_of_nice(19) < share_of_nice(10) < share_of_nice(1) < 1.0


def test_a_worker_rests_only_while_serve_is_busy_and_for_its_share() -> None:
    clock, rests = Clock(), []
    pacer = Pacer(0.1, clock=clock, rest=rests.append)

    pacer.after_job(0.01)  # no traffic: no rest
    pacer.busy()
    pacer.after_job(0.01)  # a tenth of the time: rests nine times the job
    clock.now += BUSY_WINDOW_SECONDS + 0.01
    pacer.after_job(0.01)  # the traffic stopped: flat out again

    assert rests == [pytest.approx(0.09)]


def test_a_rest_is_bounded_and_a_full_share_never_rests() -> None:
    clock, rests = Clock(), []
    slow = Pacer(0.01, clock=clock, rest=rests.append)
    slow.busy()
    slow.after_job(10.0)
    full = Pacer(1.0, clock=clock, rest=rests.append)
    full.busy()
    full.after_job(10.0)

    assert rests == [MAX_REST_SECONDS]
    with pytest.raises(ValueError, match="share"):
        Pacer(0.0)


def test_a_released_pacer_does_not_keep_a_stopping_worker() -> None:
    pacer = Pacer(0.01)
    pacer.busy()
    pacer.release()
    started = time.monotonic()
    pacer.after_job(10.0)  # would rest MAX_REST_SECONDS; returns at once when released
    assert time.monotonic() - started < MAX_REST_SECONDS / 2
