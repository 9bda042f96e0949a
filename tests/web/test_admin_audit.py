"""The audit log page over real HTTP: a program's entries newest first, the
staff member's e-mail as the actor, filtering by action prefix, paging, and
nobody reading another program's log."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
from sqlalchemy import select

from partnerloop.audit.models import AuditEntry
from tests.conftest import Server
from tests.factories.affiliates import create_affiliate_api
from tests.factories.programs import create_program_api
from tests.support.staff import csrf_of, signed_in_client


def _program(api: httpx.Client) -> dict[str, Any]:
    return create_program_api(api, name=f"Audit {secrets.token_hex(3)}")


def _entry_ids(page: httpx.Response) -> list[str]:
    return re.findall(r'<tr id="audit-([^"]+)">', page.text)


def _stored(server: Server, program_id: str) -> list[AuditEntry]:
    with server.runtime.sessions() as db:
        return list(
            db.scalars(
                select(AuditEntry)
                .where(AuditEntry.program_id == program_id)
                .order_by(AuditEntry.id.desc())
            )
        )


def test_the_log_shows_the_programs_changes_newest_first_with_who_did_them(
    server: Server,
) -> None:
    with server.client() as api:
        program = _program(api)
        other = _program(api)
        pending = create_affiliate_api(api, program["id"], approve=False)
        create_affiliate_api(api, other["id"])

    with signed_in_client(server, "manager") as manager:
        listed = manager.get("/admin/affiliates", params={"program": program["id"]})
        approved = manager.post(
            f"/admin/affiliates/{pending['id']}/approve",
            params={"program": program["id"]},
            data={"csrf": csrf_of(listed)},
        )
        assert approved.status_code == 303
        manager_email = re.search(r"Signed in as ([^ ]+) \(manager\)", listed.text)
    assert manager_email is not None
    with signed_in_client(server, "analyst") as analyst:
        log = analyst.get("/admin/audit", params={"program": program["id"]})
        staff_only = analyst.get(
            "/admin/audit", params={"program": program["id"], "action": "affiliate.app"}
        )
        nothing = analyst.get(
            "/admin/audit", params={"program": program["id"], "action": "payout."}
        )
        wildcard = analyst.get("/admin/audit", params={"program": program["id"], "action": "%"})

    stored = _stored(server, program["id"])
    assert log.status_code == 200
    assert _entry_ids(log) == [e.id for e in stored]
    # The API key made the program and signed the affiliate up; the manager
    # approved on the page.
    assert [(e.action, e.actor_kind) for e in stored] == [
        ("affiliate.approved", "staff"),
        ("affiliate.signed_up", "api_key"),
        ("program.created", "api_key"),
    ]
    staff_row = log.text[log.text.index(f'id="audit-{stored[0].id}"') :]
    staff_row = staff_row[: staff_row.index("</tr>")]
    assert manager_email.group(1) in staff_row
    assert pending["id"] in staff_row
    assert f'href="/admin/affiliates/{pending["id"]}?program={program["id"]}"' in staff_row
    assert "&#34;from&#34;: &#34;pending&#34;" in staff_row  # the details, escaped
    key_row = log.text[log.text.index(f'id="audit-{stored[1].id}"') :]
    assert stored[1].actor_id in key_row[: key_row.index("</tr>")]
    assert pending["email"] not in log.text  # the log holds ids, never personal data
    assert _entry_ids(staff_only) == [stored[0].id]
    assert _entry_ids(nothing) == []
    assert "No entries match." in nothing.text
    assert _entry_ids(wildcard) == []  # the prefix is text, not a LIKE pattern


def test_the_log_pages_fifty_at_a_time(server: Server) -> None:
    with server.client() as api:
        program = _program(api)
        for _ in range(26):  # a sign-up and an approval each, and the program: 53 entries
            create_affiliate_api(api, program["id"])
    stored = [e.id for e in _stored(server, program["id"])]

    with signed_in_client(server, "finance") as browser:
        first = browser.get("/admin/audit", params={"program": program["id"]})
        second = browser.get(
            "/admin/audit", params={"program": program["id"], "before": stored[49]}
        )

    assert len(stored) == 53
    assert _entry_ids(first) == stored[:50]
    assert f"before={stored[49]}" in first.text
    assert _entry_ids(second) == stored[50:]
    assert len(_entry_ids(second)) == 3
    assert 'rel="next"' not in second.text


def test_a_user_bound_to_one_program_cannot_read_another_programs_log(server: Server) -> None:
    with server.client() as api:
        mine = _program(api)
        theirs = _program(api)
        create_affiliate_api(api, theirs["id"])

    with signed_in_client(server, "analyst", program_id=mine["id"]) as browser:
        own = browser.get("/admin/audit")
        foreign = browser.get("/admin/audit", params={"program": theirs["id"]})

    assert own.status_code == 200
    assert _entry_ids(own) == [e.id for e in _stored(server, mine["id"])]
    assert foreign.status_code == 404
    assert not set(_entry_ids(foreign)) & {e.id for e in _stored(server, theirs["id"])}
