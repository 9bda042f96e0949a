"""Named fault points, so crash tests can stop a real process at an exact step.

A process started with PARTNERLOOP_FAULTS="job.before_commit=sleep:30" sleeps
30 s at that point (long enough for a test to SIGKILL it there);
"...=exit" ends the process on the spot without cleanup, like a crash. With
the setting empty (production), `checkpoint` is a dictionary lookup.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

KNOWN_POINTS = (
    "job.before_commit",  # a job's effects are written, the transaction not yet committed
    "job.after_commit",  # committed, before the worker moves on
    "delivery.before_send",  # an outbox message is claimed, the remote call not yet made
    "delivery.after_send",  # the remote side answered, its outcome not yet recorded
)


class Faults:
    def __init__(self, plan: Mapping[str, str]) -> None:
        unknown = set(plan) - set(KNOWN_POINTS)
        if unknown:
            raise ValueError(f"unknown fault points: {sorted(unknown)}; known: {KNOWN_POINTS}")
        self._plan = dict(plan)

    def checkpoint(self, name: str) -> None:
        action = self._plan.get(name)
        if action is None:
            return
        if action == "exit":
            os._exit(70)
        if action.startswith("sleep:"):
            time.sleep(float(action.removeprefix("sleep:")))
            return
        raise ValueError(f"unknown fault action {action!r} (use exit or sleep:SECONDS)")


NO_FAULTS = Faults({})
