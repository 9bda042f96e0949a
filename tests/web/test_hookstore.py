"""The webhook side of the store (web/hookstore.py) when its database fails: the
webhook is not stored and the answer says to send it again (503), never a 200
and never a 500."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from partnerloop.core.db import make_engine
from partnerloop.core.errors import DomainError
from partnerloop.integrations.shop import WebhookRequest
from partnerloop.runtime import Runtime
from partnerloop.web.hooks import HookWriter
from partnerloop.web.hookstore import Hook
from partnerloop.web.store import link_in_thread
from partnerloop.web.storelink import WEBHOOKS
from tests.support import aio


def test_a_webhook_the_database_cannot_take_is_a_503_to_send_again(runtime: Runtime) -> None:
    with tempfile.TemporaryDirectory() as directory:
        # A database file in a directory that does not exist: every connection fails.
        engine = make_engine(f"sqlite:///{Path(directory) / 'gone' / 'db.sqlite'}")
        writer = HookWriter(link_in_thread(engine, runtime.cipher, batch_max=10, kind=WEBHOOKS))
        hook = Hook(
            "con_01HZZZZZZZZZZZZZZZZZZZZZZZ",
            WebhookRequest("POST", {"x-shopify-topic": "orders/create"}, {}, b"{}"),
            "http://127.0.0.1/hooks/con_01HZZZZZZZZZZZZZZZZZZZZZZZ",
        )

        async def scenario() -> None:
            try:
                await writer.submit(hook)
            finally:
                await writer.close()

        with pytest.raises(DomainError) as raised:
            aio.run(scenario)
        engine.dispose()
    assert (raised.value.status, raised.value.code) == (503, "store_unavailable")
