"""Run a coroutine to completion from a plain test, in a thread of its own.

The browser tests' Playwright (sync API) keeps an event loop running in the main
thread for the whole session, and asyncio.run() refuses to start inside one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(asyncio.run(make()))
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    thread = threading.Thread(target=target, name="test-event-loop")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]
