"""The connectors and deliveries pages over real HTTP: what each connector is,
its webhook URL and delivery health without its secrets; enabling and
disabling an outgoing endpoint (managers and owners only, 403 for finance and
analysts); the delivery log, a message's attempts, and replaying a dead
letter; program binding and CSRF, checked against the database."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from sqlalchemy import select

from partnerloop.audit.models import AuditEntry
from partnerloop.integrations.models import Connector
from partnerloop.sync.models import OutboxMessage
from tests.conftest import Server, drain
from tests.factories.affiliates import create_affiliate_api
from tests.factories.connectors import create_connector_api
from tests.factories.programs import create_program_api
from tests.support.http import Reply, ScriptedServer
from tests.support.staff import csrf_of, signed_in_client

SHOP_SECRET = "shpss_" + "k" * 32


def _program(api: httpx.Client) -> dict[str, Any]:
    return create_program_api(api, name=f"Connectors {secrets.token_hex(3)}")


def _hook(api: httpx.Client, program_id: str, url: str, **settings: Any) -> dict[str, Any]:
    response = api.post(
        "/api/v1/connectors",
        json={"program_id": program_id, "kind": "webhook", "settings": {"url": url, **settings}},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _world(server: Server) -> dict[str, Any]:
    with server.client() as api:
        program = _program(api)
        shop = create_connector_api(
            api,
            program["id"],
            "shopify",
            secret=SHOP_SECRET,
            settings={"shop_domain": f"s{secrets.token_hex(3)}.myshopify.com"},
        )
        hook = _hook(api, program["id"], "https://receiver.example/in/tok_sEcReTpAtH?key=abc")
    return {"program": program, "shop": shop, "hook": hook}


def _connector(server: Server, connector_id: str) -> tuple[str, str | None]:
    with server.runtime.sessions() as db:
        row = db.get_one(Connector, connector_id)
        return row.status, row.disabled_reason


def _audit(server: Server, subject_id: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    with server.runtime.sessions() as db:
        return [
            (e.action, e.program_id, e.details)
            for e in db.scalars(
                select(AuditEntry)
                .where(AuditEntry.subject_id == subject_id, AuditEntry.actor_kind == "staff")
                .order_by(AuditEntry.id)
            )
        ]


def _csrf(browser: httpx.Client, program_id: str) -> str:
    page = browser.get("/admin/connectors", params={"program": program_id})
    assert page.status_code == 200, page.text
    return csrf_of(page)


def _switch(
    browser: httpx.Client,
    connector_id: str,
    program_id: str,
    action: str,
    data: dict[str, str],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return browser.post(
        f"/admin/connectors/{connector_id}/{action}",
        params={"program": program_id},
        data=data,
        headers=headers,
    )


def test_the_page_lists_connectors_with_webhook_urls_and_never_a_secret(server: Server) -> None:
    world = _world(server)
    program, shop, hook = world["program"], world["shop"], world["hook"]
    with server.client() as api:
        elsewhere = _world(server)["shop"]
        api_view = api.get(f"/api/v1/connectors/{shop['id']}").json()

    with signed_in_client(server, "analyst") as browser:
        page = browser.get("/admin/connectors", params={"program": program["id"]})

    assert page.status_code == 200
    assert f'id="connector-{shop["id"]}"' in page.text
    assert f'id="connector-{hook["id"]}"' in page.text
    assert f'id="connector-{elsewhere["id"]}"' not in page.text
    # The shop's webhook URL, exactly as the API prints it, to paste into the shop.
    assert api_view["webhook_url"].endswith(f"/hooks/{shop['id']}")
    assert f'<code class="url">{api_view["webhook_url"]}</code>' in page.text
    # An outgoing endpoint is shown by its host only (its path may hold a token).
    assert "to receiver.example" in page.text
    assert "tok_sEcReTpAtH" not in page.text
    assert "key=abc" not in page.text
    assert SHOP_SECRET not in page.text
    assert hook["secret"] not in page.text
    assert "whsec_" not in page.text
    # Analysts see no buttons.
    assert "/disable?" not in page.text
    assert "/enable?" not in page.text


def test_finance_and_analysts_see_the_page_but_cannot_switch_a_connector(server: Server) -> None:
    world = _world(server)
    program, hook = world["program"], world["hook"]

    answers = {}
    for role in ("finance", "analyst"):
        with signed_in_client(server, role) as browser:
            page = browser.get("/admin/connectors", params={"program": program["id"]})
            csrf = csrf_of(page)
            answers[role] = (
                page.status_code,
                "/disable?" in page.text,
                _switch(browser, hook["id"], program["id"], "disable", {"csrf": csrf}).status_code,
                _switch(browser, hook["id"], program["id"], "enable", {"csrf": csrf}).status_code,
            )

    assert answers == {"finance": (200, False, 403, 403), "analyst": (200, False, 403, 403)}
    assert _connector(server, hook["id"]) == ("active", None)
    assert _audit(server, hook["id"]) == []


def test_a_manager_disables_and_enables_an_endpoint_with_one_audit_entry_each(
    server: Server,
) -> None:
    world = _world(server)
    program, shop, hook = world["program"], world["shop"], world["hook"]

    with signed_in_client(server, "manager") as browser:
        csrf = _csrf(browser, program["id"])
        disabled = _switch(browser, hook["id"], program["id"], "disable", {"csrf": csrf})
        after_disable = _connector(server, hook["id"])
        listed = browser.get("/admin/connectors", params={"program": program["id"]})
        disabled_again = _switch(browser, hook["id"], program["id"], "disable", {"csrf": csrf})
        enabled = _switch(
            browser,
            hook["id"],
            program["id"],
            "enable",
            {"csrf": csrf},
            headers={"HX-Request": "true"},
        )
        shop_switch = _switch(browser, shop["id"], program["id"], "disable", {"csrf": csrf})

    assert (disabled.status_code, disabled.headers["location"]) == (
        303,
        f"/admin/connectors?program={program['id']}",
    )
    assert after_disable == ("disabled", "disabled by staff")
    assert "switched off by staff" in listed.text
    assert f"/admin/connectors/{hook['id']}/enable?" in listed.text
    assert disabled_again.status_code == 303
    assert enabled.status_code == 200
    assert enabled.text.lstrip().startswith(f'<tr id="connector-{hook["id"]}">')
    assert 'data-status="active"' in enabled.text
    assert _connector(server, hook["id"]) == ("active", None)
    # A shop's connector is not an outgoing endpoint: nothing to switch.
    assert shop_switch.status_code == 409
    assert _connector(server, shop["id"]) == ("active", None)
    assert _audit(server, hook["id"]) == [
        ("connector.disabled", program["id"], {"kind": "webhook"}),
        ("connector.enabled", program["id"], {"kind": "webhook"}),
    ]
    assert _audit(server, shop["id"]) == []


def test_a_user_bound_to_one_program_never_reaches_another_programs_connectors(
    server: Server,
) -> None:
    mine = _world(server)
    theirs = _world(server)
    mine_id, theirs_id = mine["program"]["id"], theirs["program"]["id"]
    foreign = theirs["hook"]

    with signed_in_client(server, "owner", program_id=mine_id) as browser:
        csrf = _csrf(browser, mine_id)
        answers = [
            browser.get("/admin/connectors", params={"program": theirs_id}),
            browser.get("/admin/deliveries", params={"program": theirs_id}),
            _switch(browser, foreign["id"], mine_id, "disable", {"csrf": csrf}),
            _switch(browser, foreign["id"], theirs_id, "disable", {"csrf": csrf}),
        ]

    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert _connector(server, foreign["id"]) == ("active", None)
    assert _audit(server, foreign["id"]) == []


def test_a_switch_without_the_csrf_token_or_with_a_wrong_one_changes_nothing(
    server: Server,
) -> None:
    world = _world(server)
    program, hook = world["program"], world["hook"]

    with signed_in_client(server, "owner") as browser:
        _csrf(browser, program["id"])
        answers = [
            _switch(browser, hook["id"], program["id"], "disable", {}),
            _switch(browser, hook["id"], program["id"], "disable", {"csrf": "forged"}),
            _switch(browser, hook["id"], program["id"], "disable", {}, {"HX-Request": "true"}),
        ]

    assert [a.status_code for a in answers] == [403, 403, 403]
    assert _connector(server, hook["id"]) == ("active", None)
    assert _audit(server, hook["id"]) == []


def _messages(server: Server, connector_id: str) -> list[OutboxMessage]:
    with server.runtime.sessions() as db:
        return list(
            db.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.destination_id == connector_id)
                .order_by(OutboxMessage.id)
            )
        )


def test_the_delivery_log_shows_attempts_and_a_manager_replays_a_dead_letter(
    server: Server,
) -> None:
    echo = b'{"echo": "customer.private@example.org"}'
    receiver = ScriptedServer([Reply(500, body=echo)], then=Reply(204, body=b""))
    with receiver.running(), server.client() as api:
        program = _program(api)
        hook = _hook(api, program["id"], f"{receiver.url}/in", events=["affiliate.approved"])
        with signed_in_client(server, "manager") as manager:
            csrf = _csrf(manager, program["id"])
            assert _switch(
                manager, hook["id"], program["id"], "disable", {"csrf": csrf}
            ).is_redirect
            create_affiliate_api(api, program["id"])  # approved while the endpoint is off
            drain(server.runtime)
            assert _switch(manager, hook["id"], program["id"], "enable", {"csrf": csrf}).is_redirect
            create_affiliate_api(api, program["id"])  # the receiver answers 500: a retry
            drain(server.runtime)
            dead, retrying = _messages(server, hook["id"])

            with server.runtime.sessions() as db:
                internal = db.scalars(
                    select(OutboxMessage.id).where(
                        OutboxMessage.program_id == program["id"],
                        OutboxMessage.destination_kind == "fanout",
                    )
                ).first()
            assert internal is not None

            log = manager.get("/admin/deliveries", params={"program": program["id"]})
            only_dead = manager.get(
                "/admin/deliveries", params={"program": program["id"], "state": "dead"}
            )
            other_connector = manager.get(
                "/admin/deliveries", params={"program": program["id"], "connector": "con_x"}
            )
            health = manager.get("/admin/connectors", params={"program": program["id"]})
            dead_page = manager.get(
                f"/admin/deliveries/{dead.id}", params={"program": program["id"]}
            )
            retry_page = manager.get(
                f"/admin/deliveries/{retrying.id}", params={"program": program["id"]}
            )
            not_a_delivery = manager.get(
                f"/admin/deliveries/{internal}", params={"program": program["id"]}
            )
            with signed_in_client(server, "finance") as finance:
                refused = finance.post(
                    f"/admin/deliveries/{dead.id}/replay",
                    params={"program": program["id"]},
                    data={"csrf": _csrf(finance, program["id"])},
                )
            still_dead = _messages(server, hook["id"])[0].state
            forged = manager.post(
                f"/admin/deliveries/{dead.id}/replay",
                params={"program": program["id"]},
                data={"csrf": "forged"},
            )
            replayed = manager.post(
                f"/admin/deliveries/{dead.id}/replay",
                params={"program": program["id"]},
                data={"csrf": csrf},
            )
            queued = _messages(server, hook["id"])[0]
            not_dead = manager.post(
                f"/admin/deliveries/{retrying.id}/replay",
                params={"program": program["id"]},
                data={"csrf": csrf},
            )
            drain(server.runtime)
            delivered = _messages(server, hook["id"])[0]
            audit_page = manager.get(
                "/admin/audit", params={"program": program["id"], "action": "outbox_message."}
            )

    assert (dead.state, retrying.state) == ("dead", "retry")
    assert log.status_code == 200
    assert [f'id="delivery-{m.id}"' in log.text for m in (dead, retrying)] == [True, True]
    # Newest first.
    assert log.text.index(f'id="delivery-{retrying.id}"') < log.text.index(
        f'id="delivery-{dead.id}"'
    )
    assert f'id="delivery-{internal}"' not in log.text
    assert [f'id="delivery-{m.id}"' in only_dead.text for m in (dead, retrying)] == [True, False]
    assert "No deliveries match these filters." in other_connector.text
    assert "1 dead letters" in health.text
    assert "0 delivered in 24 h, 1 waiting" in health.text
    assert dead_page.status_code == 200
    assert "affiliate.approved" in dead_page.text
    assert "gave up" in dead_page.text
    assert "the endpoint is disabled" in dead_page.text
    assert f"/admin/deliveries/{dead.id}/replay?" in dead_page.text
    assert retry_page.status_code == 200
    assert '<td class="num">500</td>' in retry_page.text
    assert "will retry" in retry_page.text
    # The remote answer may echo personal data: it stays sealed.
    assert "customer.private@example.org" not in retry_page.text
    assert not_a_delivery.status_code == 404
    assert (refused.status_code, still_dead) == (403, "dead")
    assert forged.status_code == 403
    assert (replayed.status_code, replayed.headers["location"]) == (
        303,
        f"/admin/deliveries/{dead.id}?program={program['id']}&replayed=1",
    )
    assert (queued.state, queued.attempts) == ("pending", 0)
    assert not_dead.status_code == 409
    assert delivered.state == "delivered"
    assert _audit(server, dead.id) == [
        (
            "outbox_message.replayed",
            program["id"],
            {"connector_id": hook["id"], "topic": "affiliate.approved"},
        )
    ]
    assert _audit(server, retrying.id) == []
    assert f"/admin/deliveries/{dead.id}?program=" in audit_page.text
