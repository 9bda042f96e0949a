"""The commission review pages over real HTTP: the queue with filters, paging
and CSV; approve, decline with a reason, bulk approve, each with one audit
entry per commission; the role matrix, program binding and CSRF, checked
against the database."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from partnerloop.audit.models import AuditEntry
from partnerloop.commissions.models import Commission
from partnerloop.core.clock import utcnow
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.factories.tracking import click, create_link_api
from tests.support.staff import csrf_of, signed_in_client


def _program(api: httpx.Client, **overrides: Any) -> dict[str, Any]:
    return create_program_api(api, name=f"Commissions {secrets.token_hex(3)}", **overrides)


def _sale(
    api: httpx.Client,
    program: dict[str, Any],
    affiliate_id: str,
    amount: str,
    *,
    order_id: str | None = None,
) -> dict[str, Any]:
    """A tracked sale; returns the pending commission it earned."""
    link = create_link_api(api, program["id"], affiliate_id)
    response = api.post(
        "/api/v1/conversions",
        json={
            "program_id": program["id"],
            "order_id": order_id or f"o-{secrets.token_hex(4)}",
            "amount": amount,
            "currency": program["currency"],
            "click_id": click(api, link["code"]),
        },
    )
    assert response.status_code == 201, response.text
    (commission,) = response.json()["commissions"]
    return dict(commission)


def _world(server: Server, **program: Any) -> dict[str, Any]:
    with server.client() as api:
        made = _program(api, **program)
        ann = create_affiliate_api(api, made["id"], name="Ann Earner")
        bob = create_affiliate_api(api, made["id"], name="Bob Earner")
        return {
            "program": made,
            "ann": ann,
            "bob": bob,
            "ann_sales": [_sale(api, made, ann["id"], "100.00") for _ in range(2)],
            "bob_sale": _sale(api, made, bob["id"], "40.00"),
        }


def _state(server: Server, commission_id: str) -> tuple[str, str | None]:
    with server.runtime.sessions() as db:
        row = db.get_one(Commission, commission_id)
        return row.state, row.decline_reason


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
    page = browser.get("/admin/commissions", params={"program": program_id})
    assert page.status_code == 200, page.text
    return csrf_of(page)


def _post(
    browser: httpx.Client,
    path: str,
    program_id: str,
    data: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return browser.post(path, params={"program": program_id}, data=data, headers=headers)


def _shown(page: httpx.Response, *commissions: dict[str, Any]) -> list[bool]:
    return [f'id="commission-{c["id"]}"' in page.text for c in commissions]


def test_the_queue_shows_pending_commissions_with_amounts_and_filters(server: Server) -> None:
    world = _world(server)
    program, ann, bob = world["program"], world["ann"], world["bob"]
    first, second = world["ann_sales"]
    bobs = world["bob_sale"]
    with server.client() as api:
        assert api.post(f"/api/v1/commissions/{second['id']}/approve").status_code == 200
        yen = _program(api, currency="JPY", commission={"type": "fixed", "value": "500"})
        yen_earner = create_affiliate_api(api, yen["id"])
        yen_sale = _sale(api, yen, yen_earner["id"], "12000")
    today = utcnow().date()

    with signed_in_client(server, "analyst") as browser:
        queue = browser.get("/admin/commissions", params={"program": program["id"]})
        everything = browser.get(
            "/admin/commissions", params={"program": program["id"], "state": "all"}
        )
        approved = browser.get(
            "/admin/commissions", params={"program": program["id"], "state": "approved"}
        )
        of_bob = browser.get(
            "/admin/commissions",
            params={"program": program["id"], "state": "all", "affiliate": bob["id"]},
        )
        today_only = browser.get(
            "/admin/commissions",
            params={"program": program["id"], "state": "all", "from": str(today), "to": str(today)},
        )
        from_tomorrow = browser.get(
            "/admin/commissions",
            params={
                "program": program["id"],
                "state": "all",
                "from": str(today + timedelta(days=1)),
            },
        )
        bad_date = browser.get(
            "/admin/commissions", params={"program": program["id"], "from": "yesterday"}
        )
        yen_page = browser.get("/admin/commissions", params={"program": yen["id"]})

    assert queue.status_code == 200
    assert _shown(queue, first, second, bobs) == [True, False, True]
    assert "10.00 EUR" in queue.text
    assert "100.00 EUR" in queue.text
    assert "4.00 EUR" in queue.text
    assert "Ann Earner" in queue.text
    assert "Bob Earner" in queue.text
    assert ann["email"] not in queue.text  # the queue shows names, not e-mails
    # Analysts read only: no review buttons, no bulk form.
    assert "/approve?" not in queue.text
    assert 'id="bulk"' not in queue.text
    assert _shown(everything, first, second, bobs) == [True, True, True]
    assert _shown(approved, first, second, bobs) == [False, True, False]
    assert _shown(of_bob, first, second, bobs) == [False, False, True]
    assert _shown(today_only, first, second, bobs) == [True, True, True]
    assert _shown(from_tomorrow, first, second, bobs) == [False, False, False]
    assert bad_date.status_code == 422
    assert _shown(yen_page, yen_sale) == [True]
    assert "500 JPY" in yen_page.text
    assert "12000 JPY" in yen_page.text


def test_the_queue_pages_fifty_at_a_time(server: Server) -> None:
    with server.client() as api:
        program = _program(api)
        earner = create_affiliate_api(api, program["id"])
        link = create_link_api(api, program["id"], earner["id"])
        made = []
        for n in range(51):
            response = api.post(
                "/api/v1/conversions",
                json={
                    "program_id": program["id"],
                    "order_id": f"page-{n}",
                    "amount": "10.00",
                    "currency": "EUR",
                    "click_id": click(api, link["code"]),
                },
            )
            made.append(response.json()["commissions"][0]["id"])
    made.sort()

    with signed_in_client(server, "finance") as browser:
        first = browser.get("/admin/commissions", params={"program": program["id"]})
        second = browser.get(
            "/admin/commissions", params={"program": program["id"], "after": made[49]}
        )

    assert [i for i in made if f'id="commission-{i}"' in first.text] == made[:50]
    assert f"after={made[49]}" in first.text
    assert [i for i in made if f'id="commission-{i}"' in second.text] == made[50:]


def test_review_approve_and_decline_with_a_reason_each_write_one_audit_entry(
    server: Server,
) -> None:
    world = _world(server)
    program = world["program"]
    keep, drop = world["ann_sales"]
    bobs = world["bob_sale"]

    with signed_in_client(server, "finance") as browser:
        csrf = _csrf(browser, program["id"])
        approved = _post(
            browser, f"/admin/commissions/{keep['id']}/approve", program["id"], {"csrf": csrf}
        )
        declined = _post(
            browser,
            f"/admin/commissions/{drop['id']}/decline",
            program["id"],
            {"csrf": csrf, "reason": "  The order was cancelled by the shop.  "},
            headers={"HX-Request": "true"},
        )
        no_reason = _post(
            browser,
            f"/admin/commissions/{bobs['id']}/decline",
            program["id"],
            {"csrf": csrf, "reason": "   "},
        )
        declined_twice = _post(
            browser,
            f"/admin/commissions/{drop['id']}/approve",
            program["id"],
            {"csrf": csrf},
        )

    assert (approved.status_code, approved.headers["location"]) == (
        303,
        f"/admin/commissions?program={program['id']}",
    )
    assert declined.status_code == 200
    assert declined.text.lstrip().startswith(f'<tr id="commission-{drop["id"]}">')
    assert 'data-state="declined"' in declined.text
    assert "The order was cancelled by the shop." in declined.text
    assert no_reason.status_code == 422
    assert declined_twice.status_code == 409  # a declined commission cannot be approved
    assert _state(server, keep["id"]) == ("approved", None)
    assert _state(server, drop["id"]) == ("declined", "The order was cancelled by the shop.")
    assert _state(server, bobs["id"]) == ("pending", None)
    assert _audit(server, keep["id"]) == [
        ("commission.approved", program["id"], {"from": "pending", "to": "approved"})
    ]
    assert _audit(server, drop["id"]) == [
        ("commission.declined", program["id"], {"from": "pending", "to": "declined"})
    ]
    assert _audit(server, bobs["id"]) == []


def test_bulk_approve_approves_the_selected_pending_commissions(server: Server) -> None:
    world = _world(server)
    program = world["program"]
    first, second = world["ann_sales"]
    bobs = world["bob_sale"]
    with server.client() as api:
        assert api.post(f"/api/v1/commissions/{second['id']}/decline").status_code == 200

    with signed_in_client(server, "manager") as browser:
        csrf = _csrf(browser, program["id"])
        back = f"/admin/commissions?program={program['id']}&state=pending"
        done = _post(
            browser,
            "/admin/commissions/bulk-approve",
            program["id"],
            {"csrf": csrf, "ids": [first["id"], second["id"], bobs["id"]], "next": back},
        )
        page = browser.get(done.headers["location"])

    assert (done.status_code, done.headers["location"]) == (303, back + "&approved=2")
    assert "Approved: 2." in page.text
    assert [_state(server, c["id"])[0] for c in (first, second, bobs)] == [
        "approved",
        "declined",
        "approved",
    ]
    assert [len(_audit(server, c["id"])) for c in (first, second, bobs)] == [1, 0, 1]


def test_analysts_cannot_review_and_nothing_changes(server: Server) -> None:
    world = _world(server)
    program = world["program"]
    target = world["bob_sale"]

    with signed_in_client(server, "analyst") as browser:
        csrf = _csrf(browser, program["id"])
        answers = [
            _post(browser, f"/admin/commissions/{target['id']}/approve", program["id"], data)
            for data in ({"csrf": csrf},)
        ]
        answers.append(
            _post(
                browser,
                f"/admin/commissions/{target['id']}/decline",
                program["id"],
                {"csrf": csrf, "reason": "fraud"},
            )
        )
        answers.append(
            _post(
                browser,
                "/admin/commissions/bulk-approve",
                program["id"],
                {"csrf": csrf, "ids": [target["id"]]},
            )
        )

    assert [a.status_code for a in answers] == [403, 403, 403]
    assert _state(server, target["id"]) == ("pending", None)
    assert _audit(server, target["id"]) == []


def test_a_user_bound_to_one_program_never_reaches_another_programs_commissions(
    server: Server,
) -> None:
    mine = _world(server)
    theirs = _world(server)
    foreign = theirs["bob_sale"]
    mine_id, theirs_id = mine["program"]["id"], theirs["program"]["id"]

    with signed_in_client(server, "finance", program_id=mine_id) as browser:
        csrf = _csrf(browser, mine_id)
        own_queue = browser.get("/admin/commissions")
        pages = [
            browser.get("/admin/commissions", params={"program": theirs_id}),
            browser.get("/admin/commissions.csv", params={"program": theirs_id}),
        ]
        posts = [
            _post(browser, f"/admin/commissions/{foreign['id']}/approve", mine_id, {"csrf": csrf}),
            _post(
                browser, f"/admin/commissions/{foreign['id']}/approve", theirs_id, {"csrf": csrf}
            ),
            _post(
                browser,
                f"/admin/commissions/{foreign['id']}/decline",
                mine_id,
                {"csrf": csrf, "reason": "not yours"},
            ),
            _post(
                browser,
                "/admin/commissions/bulk-approve",
                mine_id,
                {"csrf": csrf, "ids": [mine["bob_sale"]["id"], foreign["id"]]},
            ),
        ]

    assert _shown(own_queue, mine["bob_sale"]) == [True]
    assert _shown(own_queue, foreign) == [False]
    assert [r.status_code for r in pages + posts] == [404] * 6
    assert _state(server, foreign["id"]) == ("pending", None)
    # The bulk approval is all or nothing: its own commission was not approved either.
    assert _state(server, mine["bob_sale"]["id"]) == ("pending", None)
    assert _audit(server, foreign["id"]) == []
    assert _audit(server, mine["bob_sale"]["id"]) == []


def test_a_review_without_the_csrf_token_or_with_a_wrong_one_changes_nothing(
    server: Server,
) -> None:
    world = _world(server)
    program = world["program"]
    first, second = world["ann_sales"]

    with signed_in_client(server, "finance") as browser:
        _csrf(browser, program["id"])
        answers = [
            _post(browser, f"/admin/commissions/{first['id']}/approve", program["id"], {}),
            _post(
                browser,
                f"/admin/commissions/{first['id']}/approve",
                program["id"],
                {"csrf": "forged"},
            ),
            _post(
                browser,
                f"/admin/commissions/{second['id']}/decline",
                program["id"],
                {"reason": "no token"},
                headers={"HX-Request": "true"},
            ),
            _post(
                browser,
                "/admin/commissions/bulk-approve",
                program["id"],
                {"csrf": "forged", "ids": [first["id"]]},
            ),
        ]

    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert [_state(server, c["id"]) for c in (first, second)] == [("pending", None)] * 2
    assert _audit(server, first["id"]) == []
    assert _audit(server, second["id"]) == []


def test_the_csv_export_has_exactly_the_filtered_rows_with_formulas_defused(
    server: Server,
) -> None:
    with server.client() as api:
        program = _program(api)
        earner = create_affiliate_api(api, program["id"], name="@Earner")
        plain = _sale(api, program, earner["id"], "19.99", order_id=f"A-{secrets.token_hex(3)}")
        formula = _sale(api, program, earner["id"], "250.00", order_id="=cmd|' /C calc'!A0")
        declined = api.post(
            f"/api/v1/commissions/{formula['id']}/decline", json={"reason": "-refunded in full"}
        )
        assert declined.status_code == 200, declined.text

    with signed_in_client(server, "analyst") as browser:
        everything = browser.get(
            "/admin/commissions.csv", params={"program": program["id"], "state": "all"}
        )
        pending = browser.get("/admin/commissions.csv", params={"program": program["id"]})

    with server.runtime.sessions() as db:
        created = {
            c.id: c.created_at.isoformat()
            for c in db.scalars(select(Commission).where(Commission.program_id == program["id"]))
        }
    header = [
        "id",
        "created_at",
        "affiliate_id",
        "affiliate_name",
        "order_id",
        "state",
        "amount",
        "currency",
        "order_amount",
        "decline_reason",
    ]
    plain_row = [
        plain["id"],
        created[plain["id"]],
        earner["id"],
        "'@Earner",
        plain["order_id"],
        "pending",
        "2.00",
        "EUR",
        "19.99",
        "",
    ]
    formula_row = [
        formula["id"],
        created[formula["id"]],
        earner["id"],
        "'@Earner",
        "'=cmd|' /C calc'!A0",
        "declined",
        "25.00",
        "EUR",
        "250.00",
        "'-refunded in full",
    ]
    assert everything.status_code == 200
    assert everything.headers["content-type"] == "text/csv; charset=utf-8"
    assert list(csv.reader(io.StringIO(everything.text))) == [
        header,
        *sorted([plain_row, formula_row]),
    ]
    assert list(csv.reader(io.StringIO(pending.text))) == [header, plain_row]
