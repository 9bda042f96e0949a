"""The redirect's side of the click store (web/store.py): every redirect
waits until its click is committed, but many redirects share one commit (the
connection and its framing: web/storelink.py).

If the store cannot be reached or its commit fails, the click is answered False:
the shopper still goes on, without a click id (nothing downstream refers to a
click we do not have).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from partnerloop.runtime import Runtime
from partnerloop.tracking.service import ClickRecord
from partnerloop.web import metrics
from partnerloop.web.store import EPOCH, link_in_thread, link_to
from partnerloop.web.storelink import CLICKS, Answer, StoreLink


def encode(click: ClickRecord) -> tuple:  # type: ignore[type-arg]
    """A click as a plain tuple marshal can carry (store.decode_click)."""
    moment = click.created_at - EPOCH
    micros = (moment.days * 86_400 + moment.seconds) * 1_000_000 + moment.microseconds
    return (*click[:4], micros, *click[5:])


def _observe(clicks: int, committed: bool, seconds: float) -> None:
    metrics.CLICK_BATCH_SIZE.observe(clicks)
    if committed:
        metrics.CLICK_COMMIT_SECONDS.observe(seconds)
        metrics.CLICKS_WRITTEN.inc(clicks)
    else:
        metrics.CLICK_WRITE_FAILURES.inc()


class ClickWriter:
    def __init__(self, link: StoreLink) -> None:
        self._link = link

    @classmethod
    def to_socket(cls, path: Path) -> ClickWriter:
        """Send to a store listening at `path` (serve's own process)."""
        return cls(link_to(path, kind=CLICKS, on_answer=_observe))

    @classmethod
    def in_thread(cls, runtime: Runtime) -> ClickWriter:
        """Run the store in a thread of this process, started on first use."""
        return cls(
            link_in_thread(
                runtime.engine,
                runtime.cipher,
                batch_max=runtime.settings.click_batch_max,
                kind=CLICKS,
                on_answer=_observe,
            )
        )

    async def record(self, click: ClickRecord) -> bool:
        """Queue a click and wait for its commit. False if it was not committed."""
        committed, _ = await self._link.submit(encode(click))
        return committed

    def record_soon(self, click: ClickRecord) -> asyncio.Future[Answer] | None:
        """Queue a click from a callback (the HTTP front, web/front.py): the future
        of its answer, whose first item says committed. None, with nothing
        queued, before the first `record` has connected to the store."""
        return self._link.submit_soon(encode(click))

    async def close(self) -> None:
        """Wait for the clicks already sent to be answered, then disconnect (on shutdown)."""
        await self._link.close()
