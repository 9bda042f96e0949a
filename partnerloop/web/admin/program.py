"""Admin page /admin/program: a program's white label (portal name, logo,
colours, texts, e-mail sender), signup (approval, extra questions), two-factor
for its staff, and its own portal and tracking domains.

Everyone with READ sees the settings; saving needs MANAGE_PROGRAM and the
session's CSRF token, and commits the change together with one audit entry
(the names of the settings changed, never their values). Invalid values
re-render the form (422) with each message next to its field.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from partnerloop.access.roles import Permission
from partnerloop.audit import service as audit_log
from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import DomainError, InvalidInput
from partnerloop.programs import settings as program_settings
from partnerloop.programs.branding import DEFAULT_ACCENT_COLOR, DEFAULT_BRAND_COLOR
from partnerloop.programs.settings import TEXT_LIMITS, ProgramSettings, SettingsInvalid
from partnerloop.runtime import Runtime
from partnerloop.web.admin.guard import ProgramChoice, ProgramQuery, Staff, StaffDep
from partnerloop.web.deps import RuntimeDep
from partnerloop.web.i18n import Translator, catalogue
from partnerloop.web.pages import render, translator

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form()]
TEXT_LANGUAGES = ("en", "nl")
TEXT_INPUTS = tuple(
    (key, language, f"text_{key}_{language}") for key in TEXT_LIMITS for language in TEXT_LANGUAGES
)
PLAIN_INPUTS = (
    "portal_name",
    "logo_url",
    "brand_color",
    "accent_color",
    "mail_sender",
    "signup_approval",
    "portal_domain",
    "tracking_domain",
)


def _form_of(values: ProgramSettings) -> dict[str, Any]:
    """What the form shows for saved settings."""
    form: dict[str, Any] = {name: getattr(values, name) or "" for name in PLAIN_INPUTS}
    for key, language, input_name in TEXT_INPUTS:
        form[input_name] = values.portal_texts.get(key, {}).get(language, "")
    form["signup_fields"] = (
        json.dumps(values.signup_fields, indent=2, ensure_ascii=False)
        if values.signup_fields
        else "[]"
    )
    form["require_two_factor"] = values.require_two_factor
    return form


def _input_of(field: str) -> str:
    """The form input a settings field (as the domain names it) belongs to."""
    if field.startswith("portal_texts."):
        parts = field.split(".")
        if len(parts) == 3 and f"text_{parts[1]}_{parts[2]}" in {n for _, _, n in TEXT_INPUTS}:
            return f"text_{parts[1]}_{parts[2]}"
    if field.startswith("signup_fields"):
        return "signup_fields"
    return field if field in PLAIN_INPUTS or field == "require_two_factor" else "form"


def _message(t: Translator, error: DomainError) -> str:
    key = f"program.error.{error.code}"
    text = t(key) if key in catalogue("en") else error.detail
    # A message about one question of the JSON list says which one.
    if error.field and error.field.startswith("signup_fields") and error.field != "signup_fields":
        return f"{error.field}: {text}"
    return text


def _errors_by_input(t: Translator, errors: list[DomainError]) -> dict[str, list[str]]:
    by_input: dict[str, list[str]] = {}
    for error in errors:
        by_input.setdefault(_input_of(error.field or "form"), []).append(_message(t, error))
    return by_input


def _preview_color(value: str, default: str) -> str:
    """Colours go into a style attribute: only ever a checked #rrggbb."""
    return value if program_settings.is_color(value) else default


def _page(
    request: Request,
    runtime: Runtime,
    staff: Staff,
    program: ProgramChoice,
    *,
    form: dict[str, Any],
    saved: ProgramSettings,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
    done: bool = False,
) -> Response:
    public_url = runtime.settings.public_url
    scheme = "https" if public_url.startswith("https://") else "http"
    return render(
        request,
        "admin/program.html",
        status=status,
        language=staff.language,
        staff=staff,
        program=program,
        form=form,
        errors=errors or {},
        done=done,
        can_edit=staff.can(Permission.MANAGE_PROGRAM),
        text_inputs=TEXT_INPUTS,
        preview_brand=_preview_color(str(form.get("brand_color", "")), DEFAULT_BRAND_COLOR),
        preview_accent=_preview_color(str(form.get("accent_color", "")), DEFAULT_ACCENT_COLOR),
        logo_url=saved.logo_url,
        portal_url=(
            f"{scheme}://{saved.portal_domain}/"
            if saved.portal_domain
            else f"{public_url}/portal/{program.id}/"
        ),
        link_example=(
            f"{scheme}://{saved.tracking_domain}/CODE"
            if saved.tracking_domain
            else f"{public_url}/r/CODE"
        ),
    )


@router.get("/admin/program")
def program_page(
    request: Request,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    saved: str | None = None,
) -> Response:
    staff.require(Permission.READ)
    chosen = staff.program(program)
    with runtime.sessions() as session:
        values = program_settings.get(session, chosen.id)
    return _page(
        request, runtime, staff, chosen, form=_form_of(values), saved=values, done=saved == "1"
    )


@router.post("/admin/program")
def save_program(
    request: Request,
    staff: StaffDep,
    runtime: RuntimeDep,
    program: ProgramQuery = None,
    csrf: FormText = "",
    portal_name: FormText = "",
    logo_url: FormText = "",
    brand_color: FormText = "",
    accent_color: FormText = "",
    mail_sender: FormText = "",
    text_welcome_en: FormText = "",
    text_welcome_nl: FormText = "",
    text_terms_en: FormText = "",
    text_terms_nl: FormText = "",
    text_signup_intro_en: FormText = "",
    text_signup_intro_nl: FormText = "",
    signup_approval: FormText = "",
    signup_fields: FormText = "",
    require_two_factor: FormText = "",
    portal_domain: FormText = "",
    tracking_domain: FormText = "",
) -> Response:
    staff.require(Permission.MANAGE_PROGRAM)
    staff.check_csrf(csrf)
    chosen = staff.program(program)
    form: dict[str, Any] = {
        "portal_name": portal_name,
        "logo_url": logo_url,
        "brand_color": brand_color,
        "accent_color": accent_color,
        "mail_sender": mail_sender,
        "signup_approval": signup_approval,
        "portal_domain": portal_domain,
        "tracking_domain": tracking_domain,
        "text_welcome_en": text_welcome_en,
        "text_welcome_nl": text_welcome_nl,
        "text_terms_en": text_terms_en,
        "text_terms_nl": text_terms_nl,
        "text_signup_intro_en": text_signup_intro_en,
        "text_signup_intro_nl": text_signup_intro_nl,
        "signup_fields": signup_fields,
        # A checkbox that is not ticked is not sent at all.
        "require_two_factor": require_two_factor == "on",
    }

    changes: dict[str, Any] = {name: form[name] for name in PLAIN_INPUTS}
    changes["require_two_factor"] = form["require_two_factor"]
    texts: dict[str, dict[str, str]] = {}
    for key, language, input_name in TEXT_INPUTS:
        texts.setdefault(key, {})[language] = form[input_name]
    changes["portal_texts"] = texts
    problems: list[DomainError] = []
    try:
        changes["signup_fields"] = json.loads(signup_fields) if signup_fields.strip() else []
    except ValueError:
        problems.append(
            InvalidInput(
                "The signup questions are not valid JSON.",
                code="invalid_json",
                field="signup_fields",
            )
        )

    try:
        with transaction(runtime.sessions) as session:
            changed = program_settings.update(
                session,
                program_id=chosen.id,
                changes=changes,
                now=utcnow(),
                reserved_hosts=runtime.settings.installation_hosts,
            )
            if problems:  # nothing may change when any input is wrong
                raise SettingsInvalid(problems)
            if changed:
                audit_log.record(
                    session,
                    staff.actor,
                    action="program.settings_updated",
                    subject_kind="program",
                    subject_id=chosen.id,
                    program_id=chosen.id,
                    now=utcnow(),
                    details={"changed": changed},
                )
    except DomainError as error:
        if error.field is None:
            raise
        found = error.errors if isinstance(error, SettingsInvalid) else [error]
        all_errors = [*problems, *(e for e in found if e not in problems)]
        with runtime.sessions() as session:
            values = program_settings.get(session, chosen.id)
        status = 422 if isinstance(error, InvalidInput) else error.status
        return _page(
            request,
            runtime,
            staff,
            chosen,
            form=form,
            saved=values,
            errors=_errors_by_input(translator(request, preferred=staff.language), all_errors),
            status=status,
        )
    return RedirectResponse(f"/admin/program?program={chosen.id}&saved=1", status_code=303)
