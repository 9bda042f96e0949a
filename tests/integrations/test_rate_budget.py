"""A CRM connector's rate budget is one token bucket on its row, shared by every
worker process: a burst is spent once in all, however many workers draw from it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from partnerloop.core.clock import utcnow
from partnerloop.integrations.outbound import take_budget
from tests.conftest import Server
from tests.factories.programs import create_program_api


def hubspot_connector(server: Server) -> str:
    with server.client() as api:
        program = create_program_api(api)
        response = api.post(
            "/api/v1/connectors",
            json={
                "program_id": program["id"],
                "kind": "hubspot",
                "credentials": {"access_token": "pat-budget"},
            },
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def test_workers_drawing_at_once_spend_the_burst_exactly_once(server: Server) -> None:
    connector_id = hubspot_connector(server)
    now = utcnow()
    waits: list[float] = []
    lock = threading.Lock()

    def worker_process() -> None:  # each thread stands for one worker process
        for _ in range(5):
            wait = take_budget(server.runtime.sessions, connector_id, (1.0, 10), now)
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker_process) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # 20 calls against a burst of 10 at one instant: 10 go, 10 wait for a token.
    assert len(waits) == 20
    assert waits.count(0.0) == 10
    assert all(wait == pytest.approx(1.0) for wait in waits if wait)


def test_the_budget_refills_at_the_published_rate(server: Server) -> None:
    connector_id = hubspot_connector(server)
    start = utcnow()
    spent = [take_budget(server.runtime.sessions, connector_id, (10.0, 2), start) for _ in range(3)]
    later = take_budget(
        server.runtime.sessions, connector_id, (10.0, 2), start + timedelta(seconds=0.1)
    )

    assert spent[:2] == [0.0, 0.0]
    assert spent[2] == pytest.approx(0.1)
    assert later == 0.0
