"""The affiliates pages over real HTTP: the list with its filters, paging and
CSV; approve, reject, suspend and the commission override, each with exactly
one audit entry; the role matrix, program binding and CSRF, checked against
the database."""

from __future__ import annotations

import csv
import io
import json
import secrets
from typing import Any

import httpx
from sqlalchemy import select

from partnerloop.access import staff as staff_accounts
from partnerloop.affiliates import portal
from partnerloop.affiliates.models import Affiliate, Enrollment
from partnerloop.audit.models import AuditEntry
from partnerloop.core.db import transaction
from partnerloop.programs.models import Program
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api, unique_email
from tests.factories.programs import create_program_api
from tests.support.staff import csrf_of, make_staff, signed_in_client


def _program(server: Server, **overrides: Any) -> dict[str, Any]:
    with server.client() as api:
        return create_program_api(api, name=f"Affiliates {secrets.token_hex(3)}", **overrides)


def _affiliate(server: Server, program_id: str, *, approve: bool, **body: Any) -> dict[str, Any]:
    with server.client() as api:
        return create_affiliate_api(api, program_id, approve=approve, **body)


def _status(server: Server, affiliate_id: str) -> str:
    with server.runtime.sessions() as db:
        return db.get_one(Affiliate, affiliate_id).status


def _audit(server: Server, subject_id: str) -> list[AuditEntry]:
    """Entries staff pages wrote about this subject (API keys write their own)."""
    with server.runtime.sessions() as db:
        return list(
            db.scalars(
                select(AuditEntry)
                .where(AuditEntry.subject_id == subject_id, AuditEntry.actor_kind == "staff")
                .order_by(AuditEntry.id)
            )
        )


def _staff_id(server: Server, email: str) -> str:
    with server.runtime.sessions() as db:
        user = staff_accounts.find_by_email(db, server.runtime.cipher, email)
        assert user is not None
        return user.id


def _page_csrf(browser: httpx.Client, program_id: str) -> str:
    page = browser.get("/admin/affiliates", params={"program": program_id})
    assert page.status_code == 200, page.text
    return csrf_of(page)


def _post(
    browser: httpx.Client,
    path: str,
    program_id: str,
    data: dict[str, str],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return browser.post(path, params={"program": program_id}, data=data, headers=headers)


def test_the_list_shows_the_programs_affiliates_with_names_e_mails_and_filters(
    server: Server,
) -> None:
    program = _program(server)
    other = _program(server)
    ann = _affiliate(server, program["id"], approve=True, name="Ann Approved")
    pat = _affiliate(server, program["id"], approve=False, name="Pat Pending")
    stranger = _affiliate(server, other["id"], approve=True, name="Stranger Elsewhere")

    with signed_in_client(server, "analyst") as browser:
        everyone = browser.get("/admin/affiliates", params={"program": program["id"]})
        pending = browser.get(
            "/admin/affiliates", params={"program": program["id"], "status": "pending"}
        )
        by_email = browser.get(
            "/admin/affiliates",
            params={"program": program["id"], "email": ann["email"].upper()},
        )
        wrong_status = browser.get(
            "/admin/affiliates", params={"program": program["id"], "status": "sleeping"}
        )

    assert everyone.status_code == 200
    for shown in (ann, pat):
        assert f'id="affiliate-{shown["id"]}"' in everyone.text
        assert shown["email"] in everyone.text
    assert "Ann Approved" in everyone.text
    assert "Pat Pending" in everyone.text
    assert stranger["id"] not in everyone.text
    assert "Stranger Elsewhere" not in everyone.text
    # Analysts read; the action buttons are not there for them.
    assert "/approve" not in everyone.text
    assert "/suspend" not in everyone.text
    assert f'id="affiliate-{pat["id"]}"' in pending.text
    assert f'id="affiliate-{ann["id"]}"' not in pending.text
    assert f'id="affiliate-{ann["id"]}"' in by_email.text
    assert f'id="affiliate-{pat["id"]}"' not in by_email.text
    assert wrong_status.status_code == 422


def test_the_list_pages_fifty_at_a_time(server: Server) -> None:
    program = _program(server)
    made = [_affiliate(server, program["id"], approve=False)["id"] for _ in range(52)]

    with signed_in_client(server, "analyst") as browser:
        first = browser.get("/admin/affiliates", params={"program": program["id"]})
        second = browser.get(
            "/admin/affiliates", params={"program": program["id"], "after": made[49]}
        )

    assert [i for i in made if f'id="affiliate-{i}"' in first.text] == made[:50]
    assert f"after={made[49]}" in first.text  # the next-page link
    assert [i for i in made if f'id="affiliate-{i}"' in second.text] == made[50:]
    assert 'rel="next"' not in second.text


def test_a_manager_approves_rejects_and_suspends_with_one_audit_entry_each(
    server: Server,
) -> None:
    program = _program(server)
    newcomer = _affiliate(server, program["id"], approve=False)
    spammer = _affiliate(server, program["id"], approve=False)
    cheat = _affiliate(server, program["id"], approve=True)

    with signed_in_client(server, "manager") as browser:
        csrf = _page_csrf(browser, program["id"])
        back = f"/admin/affiliates?program={program['id']}&status=pending"
        approved = _post(
            browser,
            f"/admin/affiliates/{newcomer['id']}/approve",
            program["id"],
            {"csrf": csrf, "next": back},
        )
        rejected = _post(
            browser,
            f"/admin/affiliates/{spammer['id']}/reject",
            program["id"],
            {"csrf": csrf, "next": back},
            headers={"HX-Request": "true"},
        )
        suspended = _post(
            browser,
            f"/admin/affiliates/{cheat['id']}/suspend",
            program["id"],
            {"csrf": csrf, "next": "https://evil.example/steal"},
        )
        again = _post(
            browser, f"/admin/affiliates/{newcomer['id']}/approve", program["id"], {"csrf": csrf}
        )
        not_allowed = _post(
            browser, f"/admin/affiliates/{spammer['id']}/suspend", program["id"], {"csrf": csrf}
        )

    assert (approved.status_code, approved.headers["location"]) == (303, back)
    # HTMX gets the new row to swap in, not a redirect.
    assert rejected.status_code == 200
    assert rejected.text.lstrip().startswith(f'<tr id="affiliate-{spammer["id"]}">')
    assert 'data-status="rejected"' in rejected.text
    # `next` pointing at another site is ignored (no open redirect).
    assert (suspended.status_code, suspended.headers["location"]) == (
        303,
        f"/admin/affiliates?program={program['id']}",
    )
    assert again.status_code == 303
    assert not_allowed.status_code == 409
    assert (
        _status(server, newcomer["id"]),
        _status(server, spammer["id"]),
        _status(server, cheat["id"]),
    ) == ("approved", "rejected", "suspended")
    for affiliate, action, before in (
        (newcomer, "affiliate.approved", "pending"),
        (spammer, "affiliate.rejected", "pending"),
        (cheat, "affiliate.suspended", "approved"),
    ):
        entries = _audit(server, affiliate["id"])
        assert [(e.action, e.program_id, e.subject_kind) for e in entries] == [
            (action, program["id"], "affiliate")
        ]
        assert entries[0].details == {"from": before, "to": action.split(".")[1]}
        assert affiliate["email"] not in json.dumps(entries[0].details)


def test_the_commission_override_form_sets_changes_and_clears_the_terms(server: Server) -> None:
    program = _program(server)
    affiliate = _affiliate(server, program["id"], approve=True)
    path = f"/admin/affiliates/{affiliate['id']}/commission"

    def enrollment() -> tuple[str | None, str | None, int | None]:
        with server.runtime.sessions() as db:
            row = db.scalars(
                select(Enrollment).where(
                    Enrollment.affiliate_id == affiliate["id"],
                    Enrollment.program_id == program["id"],
                )
            ).one()
            return row.commission_type, row.commission_rate, row.commission_amount_minor

    with signed_in_client(server, "manager") as browser:
        detail = browser.get(
            f"/admin/affiliates/{affiliate['id']}", params={"program": program["id"]}
        )
        csrf = csrf_of(detail)
        percentage = _post(
            browser,
            path,
            program["id"],
            {"csrf": csrf, "commission_type": "percentage", "commission_value": "7.5"},
        )
        after_percentage = enrollment()
        fixed = _post(
            browser,
            path,
            program["id"],
            {"csrf": csrf, "commission_type": "fixed", "commission_value": "5"},
        )
        after_fixed = enrollment()
        shown = browser.get(
            "/admin/affiliates", params={"program": program["id"], "email": affiliate["email"]}
        )
        invalid = _post(
            browser,
            path,
            program["id"],
            {"csrf": csrf, "commission_type": "fixed", "commission_value": "5.001"},
        )
        after_invalid = enrollment()
        cleared = _post(
            browser,
            path,
            program["id"],
            {"csrf": csrf, "commission_type": "fixed", "commission_value": "5", "clear": "1"},
        )

    assert detail.status_code == 200
    assert (percentage.status_code, percentage.headers["location"]) == (
        303,
        f"/admin/affiliates/{affiliate['id']}?program={program['id']}&saved=1",
    )
    assert after_percentage == ("percentage", "7.5", None)
    assert (fixed.status_code, after_fixed) == (303, ("fixed", None, 500))
    assert "5.00 EUR" in shown.text
    assert invalid.status_code == 422
    assert "The terms were not saved" in invalid.text
    assert after_invalid == after_fixed
    assert cleared.status_code == 303
    assert enrollment() == (None, None, None)
    assert [(e.action, e.details) for e in _audit(server, affiliate["id"])] == [
        ("affiliate.commission_set", {"type": "percentage", "value": "7.5"}),
        ("affiliate.commission_set", {"type": "fixed", "value": "5.00"}),
        ("affiliate.commission_set", {"type": None, "value": None}),
    ]


def test_the_detail_page_shows_the_signup_answers(server: Server) -> None:
    program = _program(server)
    affiliate = _affiliate(server, program["id"], approve=False, name="Sam Signup")
    cipher = server.runtime.cipher
    # The portal's signup writes these; the test puts them where it does.
    with transaction(server.runtime.sessions) as db:
        db.get_one(Program, program["id"]).signup_fields = [
            {"name": "website", "label": {"en": "Your website", "nl": "Je website"}, "type": "url"},
            {
                "name": "terms",
                "label": {"en": "Accepts terms", "nl": "Akkoord"},
                "type": "checkbox",
            },
        ]
        db.scalars(
            select(Enrollment).where(Enrollment.affiliate_id == affiliate["id"])
        ).one().signup_answers_enc = cipher.encrypt(
            json.dumps({"website": "https://sam.example", "terms": True, "old": "kept"}),
            field=portal.ANSWERS_FIELD,
        )
    plain = _affiliate(server, program["id"], approve=False)

    with signed_in_client(server, "finance") as browser:
        english = browser.get(
            f"/admin/affiliates/{affiliate['id']}", params={"program": program["id"]}
        )
        none = browser.get(f"/admin/affiliates/{plain['id']}", params={"program": program["id"]})
    with signed_in_client(server, "analyst", language="nl") as browser:
        dutch = browser.get(
            f"/admin/affiliates/{affiliate['id']}", params={"program": program["id"]}
        )

    assert english.status_code == 200
    assert affiliate["email"] in english.text
    assert "Sam Signup" in english.text
    answers = english.text[english.text.index("Signup answers") :]
    assert answers.index("Your website") < answers.index("https://sam.example")
    assert "Accepts terms</dt>\n  <dd>yes</dd>" in answers
    assert "old</dt>\n  <dd>kept</dd>" in answers
    # Finance may read but not manage affiliates: no override form, no buttons.
    assert "/commission?" not in english.text
    assert "/approve?" not in english.text
    assert "No answers to signup questions." in none.text
    assert "Je website" in dutch.text
    assert "Akkoord</dt>\n  <dd>ja</dd>" in dutch.text


def test_analyst_and_finance_cannot_change_affiliates(server: Server) -> None:
    program = _program(server)
    pending = _affiliate(server, program["id"], approve=False)

    answers = []
    for role in ("analyst", "finance"):
        with signed_in_client(server, role) as browser:
            csrf = _page_csrf(browser, program["id"])
            answers.append(
                (
                    _post(
                        browser,
                        f"/admin/affiliates/{pending['id']}/approve",
                        program["id"],
                        {"csrf": csrf},
                    ).status_code,
                    _post(
                        browser,
                        f"/admin/affiliates/{pending['id']}/commission",
                        program["id"],
                        {"csrf": csrf, "commission_type": "percentage", "commission_value": "50"},
                    ).status_code,
                )
            )

    assert answers == [(403, 403), (403, 403)]
    assert _status(server, pending["id"]) == "pending"
    assert _audit(server, pending["id"]) == []


def test_a_user_bound_to_one_program_never_reaches_another_programs_affiliates(
    server: Server,
) -> None:
    mine = _program(server)
    theirs = _program(server)
    own = _affiliate(server, mine["id"], approve=False)
    foreign = _affiliate(server, theirs["id"], approve=False)

    with signed_in_client(server, "manager", program_id=mine["id"]) as browser:
        csrf = _page_csrf(browser, mine["id"])
        default = browser.get("/admin/affiliates")
        their_list = browser.get("/admin/affiliates", params={"program": theirs["id"]})
        their_csv = browser.get("/admin/affiliates.csv", params={"program": theirs["id"]})
        via_mine = browser.get(f"/admin/affiliates/{foreign['id']}", params={"program": mine["id"]})
        via_theirs = browser.get(
            f"/admin/affiliates/{foreign['id']}", params={"program": theirs["id"]}
        )
        post_mine = _post(
            browser, f"/admin/affiliates/{foreign['id']}/approve", mine["id"], {"csrf": csrf}
        )
        post_theirs = _post(
            browser, f"/admin/affiliates/{foreign['id']}/approve", theirs["id"], {"csrf": csrf}
        )
        override = _post(
            browser,
            f"/admin/affiliates/{foreign['id']}/commission",
            mine["id"],
            {"csrf": csrf, "commission_type": "percentage", "commission_value": "50"},
        )

    assert default.status_code == 200
    assert f'id="affiliate-{own["id"]}"' in default.text
    assert [
        r.status_code
        for r in (their_list, their_csv, via_mine, via_theirs, post_mine, post_theirs, override)
    ] == [404] * 7
    assert foreign["email"] not in their_list.text + via_mine.text + via_theirs.text
    assert _status(server, foreign["id"]) == "pending"
    assert _audit(server, foreign["id"]) == []


def test_a_post_without_the_csrf_token_or_with_a_wrong_one_changes_nothing(
    server: Server,
) -> None:
    program = _program(server)
    pending = _affiliate(server, program["id"], approve=False)

    with signed_in_client(server, "owner") as browser:
        real = _page_csrf(browser, program["id"])
        missing = _post(browser, f"/admin/affiliates/{pending['id']}/approve", program["id"], {})
        wrong = _post(
            browser,
            f"/admin/affiliates/{pending['id']}/approve",
            program["id"],
            {"csrf": real[:-2] + ("AA" if not real.endswith("AA") else "BB")},
        )
        htmx = _post(
            browser,
            f"/admin/affiliates/{pending['id']}/reject",
            program["id"],
            {},
            headers={"HX-Request": "true"},
        )
        override = _post(
            browser,
            f"/admin/affiliates/{pending['id']}/commission",
            program["id"],
            {"commission_type": "percentage", "commission_value": "50"},
        )

    assert [r.status_code for r in (missing, wrong, htmx, override)] == [403, 403, 403, 403]
    assert 'role="alert"' in missing.text  # the HTML error page (what HTMX shows in #flash)
    assert _status(server, pending["id"]) == "pending"
    with server.runtime.sessions() as db:
        enrollment = db.scalars(
            select(Enrollment).where(Enrollment.affiliate_id == pending["id"])
        ).one()
        assert enrollment.commission_type is None
    assert _audit(server, pending["id"]) == []


def test_the_csv_export_has_exactly_the_filtered_rows_with_formulas_defused(
    server: Server,
) -> None:
    program = _program(server)
    names = ['=HYPERLINK("https://evil.example","x")', "+SUM(1,2)", "-2+3", "@cmd", "Plain Name"]
    made = [
        _affiliate(server, program["id"], approve=i % 2 == 0, name=name, email=unique_email())
        for i, name in enumerate(names)
    ]
    with server.client() as api:
        override = api.put(
            f"/api/v1/affiliates/{made[0]['id']}/commission",
            json={"program_id": program["id"], "type": "fixed", "value": "5"},
        )
        assert override.status_code == 200, override.text
    _affiliate(server, _program(server)["id"], approve=True)  # another program's: never listed

    with signed_in_client(server, "analyst") as browser:
        everyone = browser.get("/admin/affiliates.csv", params={"program": program["id"]})
        approved = browser.get(
            "/admin/affiliates.csv", params={"program": program["id"], "status": "approved"}
        )

    assert everyone.status_code == 200
    assert everyone.headers["content-type"] == "text/csv; charset=utf-8"
    assert everyone.headers["content-disposition"] == (
        f'attachment; filename="affiliates-{program["id"]}.csv"'
    )
    expected = [
        [
            a["id"],
            "'" + a["name"] if a["name"][0] in "=+-@" else a["name"],
            a["email"],
            a["status"],
            a["created_at"][:10],
            "fixed" if a is made[0] else "",
            "5.00" if a is made[0] else "",
        ]
        for a in made
    ]
    header = ["id", "name", "email", "status", "joined", "commission_type", "commission_value"]
    assert list(csv.reader(io.StringIO(everyone.text))) == [header, *expected]
    assert expected[0][1] == '\'=HYPERLINK("https://evil.example","x")'
    assert list(csv.reader(io.StringIO(approved.text))) == [
        header,
        *[row for row in expected if row[3] == "approved"],
    ]
    assert [row[3] for row in expected] == [
        "approved",
        "pending",
        "approved",
        "pending",
        "approved",
    ]


def test_make_staff_accounts_are_recorded_as_the_actor(server: Server) -> None:
    program = _program(server)
    pending = _affiliate(server, program["id"], approve=False)
    email = make_staff(server, "manager")

    with httpx.Client(base_url=server.url, follow_redirects=False) as browser:
        form = browser.get("/admin/login")
        signed_in = browser.post(
            "/admin/login",
            data={"email": email, "password": "correct horse battery", "csrf": csrf_of(form)},
        )
        assert signed_in.status_code == 303
        csrf = _page_csrf(browser, program["id"])
        done = _post(
            browser, f"/admin/affiliates/{pending['id']}/approve", program["id"], {"csrf": csrf}
        )

    assert done.status_code == 303
    entries = _audit(server, pending["id"])
    assert [(e.actor_kind, e.actor_id) for e in entries] == [("staff", _staff_id(server, email))]
