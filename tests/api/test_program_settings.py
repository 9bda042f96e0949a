"""GET/PATCH /api/v1/programs/{id}/settings: white label, signup, two-factor and
domains; scopes, program binding, roles, problem+json for every invalid value,
and an audit entry for every change."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from sqlalchemy import select

from partnerloop.audit.models import AuditEntry
from partnerloop.programs.models import Program
from tests.conftest import Server
from tests.factories.programs import create_program_api
from tests.support.staff import csrf_of, signed_in_client


def _key(api: httpx.Client, scope: str, program_id: str | None = None) -> str:
    response = api.post(
        "/api/v1/api-keys", json={"name": f"{scope} key", "scope": scope, "program_id": program_id}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def _url(program_id: str) -> str:
    return f"/api/v1/programs/{program_id}/settings"


def _audit(server: Server, program_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The program's settings changes in the audit log (not its creation)."""
    with server.runtime.sessions() as db:
        rows = db.scalars(
            select(AuditEntry)
            .where(
                AuditEntry.program_id == program_id,
                AuditEntry.action == "program.settings_updated",
            )
            .order_by(AuditEntry.id)
        )
        return [(row.action, row.actor_kind, dict(row.details)) for row in rows]


def _program_row(server: Server, program_id: str) -> Program:
    with server.runtime.sessions() as db:
        row = db.get(Program, program_id)
        assert row is not None
        return row


def test_a_new_program_has_the_default_settings(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api, name="Plain shop")
        reader = _key(api, "read", program["id"])
    with server.client(reader) as api:
        response = api.get(_url(program["id"]))

    assert response.status_code == 200
    assert response.json() == {
        "program_id": program["id"],
        "portal_name": "Plain shop",
        "logo_url": None,
        "brand_color": "#1d4ed8",
        "accent_color": "#0f766e",
        "portal_texts": {},
        "mail_sender": None,
        "signup_approval": "manual",
        "signup_fields": [],
        "require_two_factor": False,
        "portal_domain": None,
        "tracking_domain": None,
    }


def test_patch_changes_only_what_it_names_and_audits_the_names(server: Server) -> None:
    brand = f"brand{secrets.token_hex(4)}.example"
    question = {
        "name": "channel",
        "label": {"en": "Main channel", "nl": "Belangrijkste kanaal"},
        "type": "select",
        "required": True,
        "options": ["Blog", "YouTube"],
    }
    with server.client() as api:
        program = create_program_api(api)
        first = api.patch(
            _url(program["id"]),
            json={
                "portal_name": "Brand Partners",
                "brand_color": "#AA0000",
                "mail_sender": "Brand Partners <partners@brand.example>",
                "portal_texts": {"welcome": {"en": "Welcome!", "nl": "Welkom!"}},
                "signup_approval": "auto",
                "signup_fields": [question],
                "portal_domain": f"Partners.{brand}",
            },
        )
        second = api.patch(_url(program["id"]), json={"accent_color": "#00aa00"})
        unchanged = api.patch(_url(program["id"]), json={"accent_color": "#00AA00"})
        read_back = api.get(_url(program["id"]))

    assert first.status_code == 200, first.text
    assert read_back.json() == {
        "program_id": program["id"],
        "portal_name": "Brand Partners",
        "logo_url": None,
        "brand_color": "#aa0000",
        "accent_color": "#00aa00",
        "portal_texts": {"welcome": {"en": "Welcome!", "nl": "Welkom!"}},
        "mail_sender": "Brand Partners <partners@brand.example>",
        "signup_approval": "auto",
        "signup_fields": [question],
        "require_two_factor": False,
        "portal_domain": f"partners.{brand}",
        "tracking_domain": None,
    }
    assert second.json() == unchanged.json() == read_back.json()
    # One entry per change (none for a patch that changed nothing); names, never values.
    assert _audit(server, program["id"]) == [
        (
            "program.settings_updated",
            "api_key",
            {
                "changed": [
                    "portal_name",
                    "brand_color",
                    "portal_texts",
                    "mail_sender",
                    "signup_approval",
                    "signup_fields",
                    "portal_domain",
                ]
            },
        ),
        ("program.settings_updated", "api_key", {"changed": ["accent_color"]}),
    ]


def test_every_invalid_value_is_a_problem_with_its_field_and_nothing_changes(
    server: Server,
) -> None:
    with server.client() as api:
        program = create_program_api(api, name="Strict shop")
        response = api.patch(
            _url(program["id"]),
            json={
                "portal_name": "Would change",
                "logo_url": "javascript:alert(1)",
                "brand_color": "blue",
                "mail_sender": "partners@brand.example",
                "signup_approval": "sometimes",
                "portal_texts": {"footer": {"en": "x"}},
                "signup_fields": [
                    {"name": "Web Site", "label": {"en": "Website"}, "type": "radio"}
                ],
                "portal_domain": "not a host",
            },
        )
        after = api.get(_url(program["id"])).json()

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["code"], body["field"]) == ("invalid_logo_url", "logo_url")
    assert [(e["field"], e["code"]) for e in body["errors"]] == [
        ("logo_url", "invalid_logo_url"),
        ("brand_color", "invalid_color"),
        ("portal_texts.footer", "unknown_text"),
        ("mail_sender", "invalid_mail_sender"),
        ("signup_approval", "invalid_signup_approval"),
        ("signup_fields[0].name", "invalid_signup_field_name"),
        ("signup_fields[0].label.nl", "missing_label"),
        ("signup_fields[0].type", "invalid_signup_field_type"),
        ("portal_domain", "invalid_host"),
    ]
    assert all(e["message"] for e in body["errors"])
    assert after["portal_name"] == "Strict shop"
    assert _audit(server, program["id"]) == []


def test_malformed_bodies_name_the_field(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        unknown = api.patch(_url(program["id"]), json={"colour": "#000000"})
        no_label = api.patch(
            _url(program["id"]), json={"signup_fields": [{"name": "site", "type": "url"}]}
        )
        wrong_type = api.patch(_url(program["id"]), json={"require_two_factor": "sometimes"})
        null_flag = api.patch(_url(program["id"]), json={"require_two_factor": None})

    assert (unknown.status_code, unknown.json()["field"]) == (422, "colour")
    assert (no_label.status_code, no_label.json()["field"]) == (422, "signup_fields[0].label")
    assert (wrong_type.status_code, wrong_type.json()["field"]) == (422, "require_two_factor")
    assert (null_flag.status_code, null_flag.json()["code"], null_flag.json()["field"]) == (
        422,
        "invalid_type",
        "require_two_factor",
    )


def test_domains_are_unique_and_never_the_installations_own(server: Server) -> None:
    host = f"partners-{secrets.token_hex(4)}.brand.example"
    with server.client() as api:
        first = create_program_api(api)
        second = create_program_api(api)
        api.patch(_url(first["id"]), json={"portal_domain": host})
        taken = api.patch(_url(second["id"]), json={"tracking_domain": host})
        own = api.patch(_url(second["id"]), json={"portal_domain": "127.0.0.1"})
        twice = api.patch(
            _url(second["id"]),
            json={"portal_domain": f"x.{host}", "tracking_domain": f"x.{host}"},
        )
        after = api.get(_url(second["id"])).json()

    assert (taken.status_code, taken.json()["code"], taken.json()["field"]) == (
        409,
        "host_taken",
        "tracking_domain",
    )
    assert (own.status_code, own.json()["code"], own.json()["field"]) == (
        422,
        "host_reserved",
        "portal_domain",
    )
    assert (twice.status_code, twice.json()["code"], twice.json()["field"]) == (
        422,
        "host_twice",
        "tracking_domain",
    )
    assert (after["portal_domain"], after["tracking_domain"]) == (None, None)


def test_scopes_and_program_binding(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        other = create_program_api(api)
        writer = _key(api, "write", program["id"])
        reader = _key(api, "read", program["id"])
        bound_admin = _key(api, "admin", program["id"])

    answers = {}
    for name, key in (("write", writer), ("read", reader), ("bound", bound_admin)):
        with server.client(key) as api:
            answers[name] = (
                api.patch(_url(program["id"]), json={"brand_color": "#000000"}).status_code,
                api.get(_url(other["id"])).status_code,
                api.patch(_url(other["id"]), json={"brand_color": "#000000"}).status_code,
            )
    with httpx.Client(base_url=server.url) as anonymous:
        answers["none"] = (
            anonymous.patch(_url(program["id"]), json={"brand_color": "#000000"}).status_code,
            anonymous.get(_url(program["id"])).status_code,
            0,
        )

    # The scope is checked first: a key that may not change settings learns nothing more.
    assert answers == {
        "write": (403, 404, 403),
        "read": (403, 404, 403),
        "bound": (200, 404, 404),
        "none": (401, 401, 0),
    }
    assert _program_row(server, other["id"]).brand_color is None
    assert _program_row(server, program["id"]).brand_color == "#000000"


def test_staff_sessions_follow_the_role_matrix(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)

    results = {}
    for number, role in enumerate(("analyst", "finance", "manager", "owner")):
        with signed_in_client(server, role) as browser:
            csrf = csrf_of(browser.get(f"/admin/program?program={program['id']}"))
            read = browser.get(_url(program["id"]))
            color = f"#00000{number}"
            patched = browser.patch(
                _url(program["id"]), json={"brand_color": color}, headers={"X-CSRF-Token": csrf}
            )
            no_csrf = browser.patch(_url(program["id"]), json={"logo_url": "https://x.example/l"})
            results[role] = (read.status_code, patched.status_code, no_csrf.status_code)

    assert results == {
        "analyst": (200, 403, 403),
        "finance": (200, 403, 403),
        "manager": (200, 200, 403),
        "owner": (200, 200, 403),
    }
    assert _program_row(server, program["id"]).logo_url is None
    assert [(a, k) for a, k, _ in _audit(server, program["id"])] == [
        ("program.settings_updated", "staff"),
        ("program.settings_updated", "staff"),
    ]


def test_two_factor_requirement_is_a_setting(server: Server) -> None:
    with server.client() as api:
        program = create_program_api(api)
        try:
            on = api.patch(_url(program["id"]), json={"require_two_factor": True})
            stored_on = _program_row(server, program["id"]).require_two_factor
        finally:
            # Unbound staff of every test would be asked for two-factor otherwise.
            off = api.patch(_url(program["id"]), json={"require_two_factor": False})

    assert (on.status_code, on.json()["require_two_factor"], stored_on) == (200, True, True)
    assert (off.status_code, off.json()["require_two_factor"]) == (200, False)
    assert [d for _, _, d in _audit(server, program["id"])] == [
        {"changed": ["require_two_factor"]},
        {"changed": ["require_two_factor"]},
    ]


def test_the_settings_are_in_the_openapi_document(server: Server) -> None:
    with server.client() as api:
        document = api.get("/api/v1/openapi.json").json()

    operations = document["paths"]["/api/v1/programs/{program_id}/settings"]
    assert set(operations) == {"get", "patch"}
    ok = operations["patch"]["responses"]["200"]["content"]["application/json"]["schema"]
    invalid = operations["patch"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ProgramSettingsOut"}
    assert invalid == {"$ref": "#/components/schemas/SettingsProblem"}
    body = operations["patch"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ProgramSettingsIn"}
    fields = document["components"]["schemas"]["ProgramSettingsOut"]["properties"]
    assert set(fields) == {
        "program_id",
        "portal_name",
        "logo_url",
        "brand_color",
        "accent_color",
        "portal_texts",
        "mail_sender",
        "signup_approval",
        "signup_fields",
        "require_two_factor",
        "portal_domain",
        "tracking_domain",
    }
