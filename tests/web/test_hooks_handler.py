"""POST /hooks/{id} is answered by the hand-written handler in front of FastAPI
(web/hooks.py HookApp): the same answers as the documented route, over real HTTP."""

from __future__ import annotations

import base64
import contextlib
import json
from collections import Counter

import httpx

from partnerloop.web.hooks import MAX_BODY
from tests.conftest import Server
from tests.factories.connectors import create_connector_api, hook_path
from tests.factories.shopify import SECRET, deliver, paid_order, setup
from tests.sync.test_worker import _clean
from tests.web.test_hooks_group_commit import _events

__all__ = ["_clean"]  # autouse: the events stored here must not reach other tests


def test_an_accepted_webhook_is_json_and_a_redelivery_is_a_duplicate(server: Server) -> None:
    with server.client() as api:
        _, connector = setup(api)
        body = json.dumps(paid_order(8_200_001)).encode()
        first = deliver(api, connector, "orders/create", body, event_id="bare-1")
        again = deliver(api, connector, "orders/create", body, event_id="bare-1")

    assert first.status_code == again.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.json()["status"] == "accepted"
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    assert _events(server.runtime, connector["id"]) == Counter({"bare-1": 1})


def test_a_body_over_the_limit_is_413_and_stores_nothing(server: Server) -> None:
    with server.client() as api:
        _, connector = setup(api)
        response = deliver(
            api, connector, "orders/create", b"x" * (MAX_BODY + 1), event_id="too-big"
        )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "body_too_large"
    assert _events(server.runtime, connector["id"]) == Counter()


def test_a_connector_that_takes_no_webhooks_is_404_problem(server: Server) -> None:
    with server.client() as api:
        program, _ = setup(api)
        outgoing = create_connector_api(
            api,
            program["id"],
            "webhook",
            secret="whsec_" + base64.b64encode(b"k" * 32).decode(),
            settings={"url": "https://receiver.example/hook"},
        )
        # An outgoing kind has no webhook_url of its own; its id in the path is refused.
        response = api.post(f"/hooks/{outgoing['id']}", content=b"{}")

    assert response.status_code == 404
    assert response.json()["code"] == "connector_not_found"
    assert "does not receive webhooks" in response.json()["detail"]


def test_paths_beside_the_handler_still_reach_the_api(server: Server) -> None:
    with server.client() as api:
        _, connector = setup(api)
        # No connector id, or a deeper path: FastAPI's own 404 problem.
        for path in ("/hooks/", f"{hook_path(connector)}/extra"):
            response = api.post(path, content=b"{}")
            assert (response.status_code, response.json()["code"]) == (404, "not_found"), path
        # Another method on the webhook path is FastAPI's route (vendors' GET handshakes).
        assert api.put(hook_path(connector), content=b"{}").status_code == 405
        # The route stays documented in the OpenAPI description.
        spec = api.get("/api/v1/openapi.json").json()
        assert "post" in spec["paths"]["/hooks/{connector_id}"]


def test_a_client_that_hangs_up_mid_body_stores_nothing(server: Server) -> None:
    with server.client() as api:
        _, connector = setup(api)

    def body() -> httpx.SyncByteStream:  # type: ignore[misc]
        yield b'{"id": 1'
        raise ConnectionAbortedError("client gone")

    with contextlib.suppress(httpx.HTTPError, ConnectionAbortedError):
        httpx.post(
            server.url + hook_path(connector),
            content=body(),
            headers={"X-Shopify-Topic": "orders/create", "Content-Length": "1000"},
            timeout=5,
        )
    assert _events(server.runtime, connector["id"]) == Counter()
    # The server goes on answering.
    with server.client() as api:
        assert api.get("/healthz").status_code == 200


def test_a_secret_rotated_out_is_refused_at_once(server: Server) -> None:
    # Webhook batches remember decrypted secrets by ciphertext; the connector's
    # columns are still read per batch, so a rotation counts from the next webhook.
    with server.client() as api:
        _, connector = setup(api)
        body = json.dumps(paid_order(8_200_002)).encode()
        assert deliver(api, connector, "orders/create", body, event_id="rot-0").status_code == 200
        for secret in ("shpss_second", "shpss_third"):
            rotated = api.post(
                f"/api/v1/connectors/{connector['id']}/secret", json={"secret": secret}
            )
            assert rotated.status_code == 200, rotated.text
        answers = [
            deliver(api, connector, "orders/create", body, event_id=f"rot-{n}", secret=secret)
            for n, secret in enumerate((SECRET, "shpss_second", "shpss_third"), start=1)
        ]

    assert [a.status_code for a in answers] == [401, 200, 200]
    assert _events(server.runtime, connector["id"]) == Counter({"rot-0": 1, "rot-2": 1, "rot-3": 1})


def test_a_path_that_is_no_connector_id_is_404_without_a_query(server: Server) -> None:
    # Not even an id's shape (here a NUL, which PostgreSQL text cannot hold): a
    # clear 404, not a database error.
    with server.client() as api:
        for junk in ("%00", "con_short", "x" * 300):
            response = api.post(f"/hooks/{junk}", content=b"{}")
            assert response.status_code == 404, (junk, response.text)
            assert response.json()["code"] == "connector_not_found"
