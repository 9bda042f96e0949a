"""The admin page /admin/program over real HTTP: every role reads it, only
manager and owner save (with the CSRF token), each save is one audit entry
with the names of what changed, and invalid values come back next to their
fields with nothing saved."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from partnerloop.audit.models import AuditEntry
from partnerloop.programs import settings as program_settings
from partnerloop.programs.settings import ProgramSettings
from tests.conftest import Server
from tests.factories.programs import create_program_api
from tests.support.staff import csrf_of, signed_in_client


def _program(server: Server) -> dict[str, Any]:
    with server.client() as api:
        return create_program_api(api, name=f"Settings shop {secrets.token_hex(3)}")


def _settings(server: Server, program_id: str) -> ProgramSettings:
    with server.runtime.sessions() as db:
        return program_settings.get(db, program_id)


def _audit(server: Server, program_id: str) -> list[AuditEntry]:
    """The program's audit entries after its creation (made by the API key)."""
    with server.runtime.sessions() as db:
        return list(
            db.scalars(
                select(AuditEntry)
                .where(AuditEntry.program_id == program_id, AuditEntry.action != "program.created")
                .order_by(AuditEntry.id)
            )
        )


def _form(program: dict[str, Any], csrf: str | None, **overrides: str) -> dict[str, str]:
    """What the page's form posts when nothing is touched, with some inputs changed."""
    data = {
        "portal_name": program["name"],
        "logo_url": "",
        "brand_color": "#1d4ed8",
        "accent_color": "#0f766e",
        "mail_sender": "",
        "text_welcome_en": "",
        "text_welcome_nl": "",
        "text_terms_en": "",
        "text_terms_nl": "",
        "text_signup_intro_en": "",
        "text_signup_intro_nl": "",
        "signup_approval": "manual",
        "signup_fields": "[]",
        "portal_domain": "",
        "tracking_domain": "",
    }
    if csrf is not None:
        data["csrf"] = csrf
    data.update(overrides)
    return data


def _page_url(program: dict[str, Any]) -> str:
    return f"/admin/program?program={program['id']}"


def _error_after(page: httpx.Response, input_id: str) -> list[str]:
    """The error messages shown right after an input (in its own block)."""
    start = page.text.index(f'id="{input_id}"')
    block = page.text[start : page.text.index("</div>", start)]
    return re.findall(r'<p class="error" id="err-[^"]+">([^<]*)</p>', block)


@pytest.mark.parametrize("role", ["analyst", "finance", "manager", "owner"])
def test_every_role_reads_the_settings(server: Server, role: str) -> None:
    program = _program(server)
    with server.client() as api:
        api.patch(
            f"/api/v1/programs/{program['id']}/settings",
            json={"brand_color": "#aa3300", "portal_texts": {"welcome": {"nl": "Welkom bij ons"}}},
        )

    with signed_in_client(server, role) as browser:
        page = browser.get(_page_url(program))

    assert page.status_code == 200
    assert f'<meta name="csrf-token" content="{csrf_of(page)}">' in page.text  # the layout's
    assert "<h1>Program settings: " in page.text
    assert 'value="#aa3300"' in page.text
    assert "Welkom bij ons</textarea>" in page.text
    assert "--pv-brand: #aa3300" in page.text  # the preview shows the saved colour
    can_save = role in ("manager", "owner")
    assert ("Save settings</button>" in page.text) is can_save
    assert (page.text.count("<fieldset disabled>") == 5) is not can_save
    assert ("can view these settings but not change them" in page.text) is not can_save


@pytest.mark.parametrize("role", ["analyst", "finance"])
def test_roles_without_the_permission_cannot_save(server: Server, role: str) -> None:
    program = _program(server)
    before = _settings(server, program["id"])

    with signed_in_client(server, role) as browser:
        csrf = csrf_of(browser.get(_page_url(program)))
        response = browser.post(
            _page_url(program), data=_form(program, csrf, brand_color="#000000")
        )

    assert response.status_code == 403
    assert _settings(server, program["id"]) == before
    assert _audit(server, program["id"]) == []


@pytest.mark.parametrize("role", ["manager", "owner"])
def test_manager_and_owner_save_with_one_audit_entry(server: Server, role: str) -> None:
    program = _program(server)
    question = [
        {
            "name": "website",
            "label": {"en": "Your website", "nl": "Je website"},
            "type": "url",
            "required": True,
        }
    ]
    with signed_in_client(server, role) as browser:
        csrf = csrf_of(browser.get(_page_url(program)))
        response = browser.post(
            _page_url(program),
            data=_form(
                program,
                csrf,
                portal_name="Brand Partners",
                brand_color="#AA3300",
                text_welcome_en="Welcome, partner!",
                text_welcome_nl="Welkom, partner!",
                mail_sender="Brand Partners <partners@brand.example>",
                signup_approval="auto",
                signup_fields=json.dumps(question),
            ),
        )
        shown = browser.get(response.headers["location"])

    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/program?program={program['id']}&saved=1"
    assert '<p class="ok" role="status">Settings saved.</p>' in shown.text
    saved = _settings(server, program["id"])
    assert (saved.portal_name, saved.brand_color, saved.accent_color) == (
        "Brand Partners",
        "#aa3300",
        "#0f766e",
    )
    assert saved.portal_texts == {"welcome": {"en": "Welcome, partner!", "nl": "Welkom, partner!"}}
    assert saved.mail_sender == "Brand Partners <partners@brand.example>"
    assert (saved.signup_approval, saved.signup_fields) == ("auto", question)
    entries = _audit(server, program["id"])
    assert [(e.action, e.actor_kind, e.subject_id, e.details) for e in entries] == [
        (
            "program.settings_updated",
            "staff",
            program["id"],
            {
                "changed": [
                    "portal_name",
                    "brand_color",
                    "portal_texts",
                    "mail_sender",
                    "signup_approval",
                    "signup_fields",
                ]
            },
        )
    ]
    # Nothing personal (the sender's address) in the log.
    assert "partners@brand.example" not in json.dumps(entries[0].details)


def test_saving_the_unchanged_form_changes_nothing_and_logs_nothing(server: Server) -> None:
    program = _program(server)
    with signed_in_client(server, "manager") as browser:
        page = browser.get(_page_url(program))
        response = browser.post(_page_url(program), data=_form(program, csrf_of(page)))

    assert response.status_code == 303
    assert _audit(server, program["id"]) == []


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(server: Server) -> None:
    program = _program(server)
    before = _settings(server, program["id"])

    with signed_in_client(server, "owner") as browser:
        browser.get(_page_url(program))
        missing = browser.post(_page_url(program), data=_form(program, None, brand_color="#000000"))
        wrong = browser.post(
            _page_url(program), data=_form(program, "not-the-token", brand_color="#000000")
        )

    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert _settings(server, program["id"]) == before
    assert _audit(server, program["id"]) == []


def test_invalid_values_come_back_next_to_their_fields(server: Server) -> None:
    program = _program(server)
    before = _settings(server, program["id"])

    with signed_in_client(server, "manager") as browser:
        csrf = csrf_of(browser.get(_page_url(program)))
        page = browser.post(
            _page_url(program),
            data=_form(
                program,
                csrf,
                portal_name="Would be saved",
                logo_url="javascript:alert(1)",
                brand_color="blue",
                mail_sender="partners@brand.example",
                text_terms_nl="x" * 20001,
                portal_domain="127.0.0.1",
                signup_fields='[{"name": "email", "label": {"en": "E-mail"}, "type": "url"}]',
            ),
        )
        bad_json = browser.post(
            _page_url(program),
            data=_form(program, csrf, signup_fields="[{name: 1}", brand_color="#123456"),
        )

    assert page.status_code == 422
    assert "Nothing was saved" in page.text
    assert _error_after(page, "logo_url") == [
        "Give a web address starting with https:// (or http://)."
    ]
    assert _error_after(page, "brand_color") == ["Choose a colour (#RRGGBB)."]
    assert _error_after(page, "mail_sender") == [
        "Give the sender as Name &lt;address&gt;, e.g. Brand Partners &lt;partners@brand.example&gt;."
    ]
    assert _error_after(page, "text_terms_nl") == ["This text is too long."]
    assert _error_after(page, "portal_domain") == [
        "This is the installation&#39;s own host; give the program a host of its own."
    ]
    assert _error_after(page, "signup_fields") == [
        "signup_fields[0].name: This name is used by the portal&#39;s own signup form; "
        "choose another.",
        "signup_fields[0].label.nl: Give the label in this language (1 to 200 characters).",
    ]
    # What was typed stays in the form; the preview keeps a safe colour.
    assert 'value="Would be saved"' in page.text
    assert 'value="javascript:alert(1)"' in page.text
    assert "--pv-brand: #1d4ed8" in page.text
    assert 'id="logo_url" name="logo_url"' in page.text
    assert 'aria-invalid="true" aria-describedby="err-logo_url-1"' in page.text
    assert 'aria-invalid="true" aria-describedby="help-mail_sender err-mail_sender-1"' in page.text
    assert bad_json.status_code == 422
    assert _error_after(bad_json, "signup_fields") == ["This is not valid JSON."]
    assert _settings(server, program["id"]) == before
    assert _audit(server, program["id"]) == []


def test_the_page_and_its_messages_in_dutch(server: Server) -> None:
    program = _program(server)
    with signed_in_client(server, "manager", language="nl") as browser:
        page = browser.get(_page_url(program))
        invalid = browser.post(
            _page_url(program), data=_form(program, csrf_of(page), brand_color="x")
        )

    assert "<h1>Programma-instellingen: " in page.text
    assert "Instellingen opslaan</button>" in page.text
    assert _error_after(invalid, "brand_color") == ["Kies een kleur (#RRGGBB)."]


def test_a_domain_of_another_program_is_a_conflict_on_the_page(server: Server) -> None:
    host = f"partners-{secrets.token_hex(4)}.brand.example"
    first = _program(server)
    second = _program(server)
    with server.client() as api:
        api.patch(f"/api/v1/programs/{first['id']}/settings", json={"portal_domain": host})

    with signed_in_client(server, "owner") as browser:
        csrf = csrf_of(browser.get(_page_url(second)))
        page = browser.post(_page_url(second), data=_form(second, csrf, tracking_domain=host))

    assert page.status_code == 409
    assert _error_after(page, "tracking_domain") == ["Another program already uses this domain."]
    assert _settings(server, second["id"]).tracking_domain is None


def test_staff_bound_to_one_program_cannot_reach_another(server: Server) -> None:
    own = _program(server)
    other = _program(server)
    before = _settings(server, other["id"])

    with signed_in_client(server, "manager", program_id=own["id"]) as browser:
        csrf = csrf_of(browser.get(_page_url(own)))
        shown = browser.get(_page_url(other))
        posted = browser.post(_page_url(other), data=_form(other, csrf, brand_color="#000000"))

    assert (shown.status_code, posted.status_code) == (404, 404)
    assert _settings(server, other["id"]) == before


def test_a_domain_saved_on_the_page_serves_at_once(server: Server) -> None:
    program = _program(server)
    host = f"partners-{secrets.token_hex(4)}.brand.example"
    with server.client() as api:
        before = api.get("/static/partnerloop.css", headers={"Host": host}).status_code

    with signed_in_client(server, "manager") as browser:
        csrf = csrf_of(browser.get(_page_url(program)))
        saved = browser.post(
            _page_url(program), data=_form(program, csrf, portal_domain=host.upper())
        )
        page = browser.get(saved.headers["location"])
    with server.client() as api:
        after = api.get("/static/partnerloop.css", headers={"Host": host}).status_code

    assert saved.status_code == 303
    assert f'value="{host}"' in page.text
    assert f"The portal is at http://{host}/" in page.text
    assert (before, after) == (404, 200)
