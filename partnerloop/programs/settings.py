"""A program's own settings: white label (portal name, logo, colours, texts,
e-mail sender), affiliate signup (approval, extra questions), two-factor for
its staff, and its own hosts. Validated here, once, for the API and the admin
page alike; every invalid value is reported with the field at fault.

A value equal to the default (the program's name as portal name, the standard
colours) is stored as "no value", so the portal keeps following the default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import getaddresses, parseaddr
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from partnerloop.core.errors import DomainError, InvalidInput
from partnerloop.programs import domains
from partnerloop.programs import service as programs
from partnerloop.programs.branding import DEFAULT_ACCENT_COLOR, DEFAULT_BRAND_COLOR
from partnerloop.programs.models import Program

LANGUAGES = ("en", "nl")
# Portal texts a program may write itself, with the most characters each may have.
TEXT_LIMITS = {"welcome": 2000, "terms": 20000, "signup_intro": 2000}
APPROVAL_MODES = ("manual", "auto")
FIELD_TYPES = ("text", "url", "textarea", "select", "checkbox")
MAX_SIGNUP_FIELDS = 20
MAX_OPTIONS = 50
MAX_LABEL = 200
MAX_URL = 2000
# The portal's own signup inputs: a custom question must not shadow one of them.
RESERVED_FIELD_NAMES = frozenset(
    {"email", "name", "password", "password_confirm", "language", "csrf", "terms"}
)
_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
_FIELD_NAME_RE = re.compile(r"^[a-z0-9_]{1,40}$")
_SIGNUP_FIELD_KEYS = ("name", "label", "type", "required", "options")

SETTING_NAMES = (
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
)
_ORDER = {name: position for position, name in enumerate(SETTING_NAMES)}
DOMAIN_SETTINGS = {"portal_domain": "portal", "tracking_domain": "tracking"}


@dataclass(frozen=True)
class ProgramSettings:
    """The settings in effect (defaults filled in)."""

    program_id: str
    portal_name: str
    logo_url: str | None
    brand_color: str
    accent_color: str
    portal_texts: dict[str, dict[str, str]]
    mail_sender: str | None
    signup_approval: str
    signup_fields: list[dict[str, Any]]
    require_two_factor: bool
    portal_domain: str | None
    tracking_domain: str | None


class SettingsInvalid(InvalidInput):
    """Some settings are invalid; `errors` holds each (the first is this error's own)."""

    def __init__(self, errors: list[DomainError]) -> None:
        first = errors[0]
        super().__init__(first.detail, code=first.code, field=first.field)
        self.errors = errors


@dataclass
class _Check:
    program: Program
    reserved_hosts: frozenset[str]
    errors: list[DomainError] = field(default_factory=list)

    def fail(self, detail: str, *, code: str, field: str) -> None:
        self.errors.append(InvalidInput(detail, code=code, field=field))


def is_color(value: str) -> bool:
    return bool(_COLOR_RE.match(value))


def get(session: Session, program_id: str) -> ProgramSettings:
    program = programs.get_or_raise(session, program_id)
    hosts = domains.domains_of(session, program_id)
    return ProgramSettings(
        program_id=program.id,
        portal_name=program.portal_name or program.name,
        logo_url=program.logo_url,
        brand_color=program.brand_color or DEFAULT_BRAND_COLOR,
        accent_color=program.accent_color or DEFAULT_ACCENT_COLOR,
        portal_texts=dict(program.portal_texts or {}),
        mail_sender=program.mail_sender,
        signup_approval=program.signup_approval,
        signup_fields=list(program.signup_fields or []),
        require_two_factor=program.require_two_factor,
        portal_domain=hosts.get("portal"),
        tracking_domain=hosts.get("tracking"),
    )


def update(
    session: Session,
    *,
    program_id: str,
    changes: Mapping[str, Any],
    now: datetime,
    reserved_hosts: Iterable[str] = (),
) -> list[str]:
    """Change the given settings (name -> new value; None: back to the default).
    All are checked before anything changes. Returns the names of the settings
    whose value changed, in SETTING_NAMES order."""
    program = programs.get_or_raise(session, program_id)
    check = _Check(program=program, reserved_hosts=frozenset(reserved_hosts))
    cleaned: dict[str, Any] = {}
    # Known settings in their page order first (errors read top to bottom), then the rest.
    for name in sorted(changes, key=lambda n: _ORDER.get(n, len(_ORDER))):
        value = changes[name]
        cleaner = _CLEANERS.get(name)
        if cleaner is None:
            check.fail(
                f"There is no setting {name!r}; the settings are {', '.join(SETTING_NAMES)}.",
                code="unknown_setting",
                field=name,
            )
            continue
        before = len(check.errors)
        result = cleaner(value, check, name)
        if len(check.errors) == before:
            cleaned[name] = result
    before_settings = get(session, program_id)
    portal = cleaned.get("portal_domain", before_settings.portal_domain)
    tracking = cleaned.get("tracking_domain", before_settings.tracking_domain)
    if portal is not None and portal == tracking:
        check.fail(
            "The tracking domain must differ from the portal domain.",
            code="host_twice",
            field="tracking_domain",
        )
    if check.errors:
        raise SettingsInvalid(check.errors)

    changed = [
        name
        for name in SETTING_NAMES
        if name in cleaned and cleaned[name] != getattr(before_settings, name)
    ]
    for name in changed:
        if name in DOMAIN_SETTINGS:
            continue
        value = cleaned[name]
        if (name, value) in (
            ("portal_name", program.name),
            ("brand_color", DEFAULT_BRAND_COLOR),
            ("accent_color", DEFAULT_ACCENT_COLOR),
        ):
            value = None
        setattr(program, name, value)
    # Free both old hosts first, so a host may move from portal to tracking in one go.
    moving = [name for name in changed if name in DOMAIN_SETTINGS]
    for name in moving:
        domains.set_domain(
            session, program_id=program_id, purpose=DOMAIN_SETTINGS[name], host=None, now=now
        )
    for name in moving:
        if cleaned[name] is not None:
            domains.set_domain(
                session,
                program_id=program_id,
                purpose=DOMAIN_SETTINGS[name],
                host=cleaned[name],
                now=now,
                reserved=check.reserved_hosts,
            )
    session.flush()
    return changed


# --- one cleaner per setting: (value, check, field) -> clean value ------------------------


def _text(value: Any, check: _Check, field: str, *, limit: int, what: str) -> str | None:
    if not isinstance(value, str):
        check.fail(f"{field} must be text.", code="invalid_type", field=field)
        return None
    text = value.strip()
    if "\x00" in text:
        check.fail(f"{field} must not contain NUL characters.", code="invalid_text", field=field)
        return None
    if len(text) > limit:
        check.fail(
            f"{what} may have at most {limit} characters.", code="text_too_long", field=field
        )
        return None
    return text


def _portal_name(value: Any, check: _Check, field: str) -> str:
    if value is None:
        return check.program.name
    text = _text(value, check, field, limit=200, what="The portal name")
    if text is None:
        return check.program.name
    if not text:
        check.fail(
            "Give the portal a name of 1 to 200 characters.",
            code="invalid_portal_name",
            field=field,
        )
    return text


def _logo_url(value: Any, check: _Check, field: str) -> str | None:
    if value is None:
        return None
    text = _text(value, check, field, limit=MAX_URL, what="The logo URL")
    if not text:
        return None
    parts = urlsplit(text)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or "@" in parts.netloc
        or any(c.isspace() or ord(c) < 32 for c in text)
    ):
        check.fail(
            "The logo URL must be a web address starting with https:// (or http://).",
            code="invalid_logo_url",
            field=field,
        )
        return None
    return text


def _color(default: str) -> Callable[[Any, _Check, str], str]:
    def clean(value: Any, check: _Check, field: str) -> str:
        if value is None:
            return default
        if not isinstance(value, str) or not _COLOR_RE.match(value.strip()):
            check.fail(
                f"{field} must be a colour as #RRGGBB, e.g. #1d4ed8.",
                code="invalid_color",
                field=field,
            )
            return default
        return value.strip().lower()

    return clean


def _portal_texts(value: Any, check: _Check, field: str) -> dict[str, dict[str, str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        check.fail(
            'portal_texts must be an object like {"welcome": {"en": "...", "nl": "..."}}.',
            code="invalid_type",
            field=field,
        )
        return {}
    texts: dict[str, dict[str, str]] = {}
    for key, by_language in value.items():
        where = f"{field}.{key}"
        if key not in TEXT_LIMITS:
            check.fail(
                f"There is no portal text {key!r}; use {', '.join(TEXT_LIMITS)}.",
                code="unknown_text",
                field=where,
            )
            continue
        if by_language is None:
            continue
        if not isinstance(by_language, dict):
            check.fail(
                f'{where} must be an object like {{"en": "...", "nl": "..."}}.',
                code="invalid_type",
                field=where,
            )
            continue
        kept: dict[str, str] = {}
        for language, raw in by_language.items():
            if language not in LANGUAGES:
                check.fail(
                    f"Portal texts are in {' and '.join(LANGUAGES)}, not {language!r}.",
                    code="unknown_language",
                    field=f"{where}.{language}",
                )
                continue
            if raw is None:
                continue
            text = _text(
                raw,
                check,
                f"{where}.{language}",
                limit=TEXT_LIMITS[key],
                what=f"The {key} text",
            )
            if text:
                kept[language] = text
        if kept:
            texts[key] = kept
    return texts


def _mail_sender(value: Any, check: _Check, field: str) -> str | None:
    if value is None:
        return None
    text = _text(value, check, field, limit=320, what="The e-mail sender")
    if not text:
        return None
    name, address = parseaddr(text)
    local, at, domain = address.rpartition("@")
    if (
        len(getaddresses([text])) != 1  # one sender, not a list
        or not name.strip()
        or f"<{address}>" not in text
        or not at
        or not local
        or "." not in domain
        or domain.startswith(".")
        or domain.endswith(".")
        or any(c.isspace() or c in '<>,;"' for c in address)
        or any(ord(c) < 32 for c in text)  # a line break would let it write mail headers
    ):
        check.fail(
            "Give the e-mail sender as Name <address>, e.g. Brand Partners <partners@brand.example>.",
            code="invalid_mail_sender",
            field=field,
        )
        return None
    try:
        return str(Address(display_name=name.strip(), addr_spec=address))
    except (HeaderParseError, ValueError, IndexError):
        check.fail(
            "Give the e-mail sender as Name <address>, e.g. Brand Partners <partners@brand.example>.",
            code="invalid_mail_sender",
            field=field,
        )
        return None


def _signup_approval(value: Any, check: _Check, field: str) -> str:
    if value not in APPROVAL_MODES:
        check.fail(
            "signup_approval must be manual (staff approve each affiliate) or auto.",
            code="invalid_signup_approval",
            field=field,
        )
        return "manual"
    return str(value)


def _require_two_factor(value: Any, check: _Check, field: str) -> bool:
    if not isinstance(value, bool):
        check.fail(f"{field} must be true or false.", code="invalid_type", field=field)
        return False
    return value


def _signup_fields(value: Any, check: _Check, field: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        check.fail("signup_fields must be a list of questions.", code="invalid_type", field=field)
        return []
    if len(value) > MAX_SIGNUP_FIELDS:
        check.fail(
            f"A program may ask at most {MAX_SIGNUP_FIELDS} signup questions.",
            code="too_many_signup_fields",
            field=field,
        )
        return []
    cleaned: list[dict[str, Any]] = []
    names: set[str] = set()
    for position, item in enumerate(value):
        question = _signup_field(item, check, f"{field}[{position}]", names)
        if question is not None:
            cleaned.append(question)
    return cleaned


def _signup_field(item: Any, check: _Check, where: str, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        check.fail(
            f"{where} must be an object with name, label, type and required.",
            code="invalid_type",
            field=where,
        )
        return None
    errors = len(check.errors)
    for key in item:
        if key not in _SIGNUP_FIELD_KEYS:
            check.fail(
                f"A signup question has no {key!r}; use {', '.join(_SIGNUP_FIELD_KEYS)}.",
                code="unknown_key",
                field=f"{where}.{key}",
            )
    name = item.get("name")
    if not isinstance(name, str) or not _FIELD_NAME_RE.match(name):
        check.fail(
            "The name must be 1 to 40 lower-case letters, digits or underscores.",
            code="invalid_signup_field_name",
            field=f"{where}.name",
        )
    elif name in RESERVED_FIELD_NAMES:
        check.fail(
            f"{name!r} is one of the portal's own signup fields; choose another name.",
            code="reserved_signup_field_name",
            field=f"{where}.name",
        )
    elif name in names:
        check.fail(
            f"Two questions are named {name!r}; names must be unique.",
            code="duplicate_signup_field_name",
            field=f"{where}.name",
        )
    else:
        names.add(name)
    label = item.get("label")
    clean_label: dict[str, str] = {}
    if not isinstance(label, dict):
        check.fail(
            'The label must be an object with both languages: {"en": "...", "nl": "..."}.',
            code="invalid_signup_field_label",
            field=f"{where}.label",
        )
    else:
        for language in label:
            if language not in LANGUAGES:
                check.fail(
                    f"Labels are in {' and '.join(LANGUAGES)}, not {language!r}.",
                    code="unknown_language",
                    field=f"{where}.label.{language}",
                )
        for language in LANGUAGES:
            text = label.get(language)
            at = f"{where}.label.{language}"
            cleaned_text = (
                _text(text, check, at, limit=MAX_LABEL, what="A label") if text is not None else ""
            )
            if cleaned_text == "":
                check.fail(
                    f"Give the label in {language} (1 to {MAX_LABEL} characters).",
                    code="missing_label",
                    field=at,
                )
            elif cleaned_text is not None:
                clean_label[language] = cleaned_text
    kind = item.get("type")
    if kind not in FIELD_TYPES:
        check.fail(
            f"The type must be one of {', '.join(FIELD_TYPES)}.",
            code="invalid_signup_field_type",
            field=f"{where}.type",
        )
    required = item.get("required", False)
    if not isinstance(required, bool):
        check.fail(
            "required must be true or false.", code="invalid_type", field=f"{where}.required"
        )
    options = item.get("options")
    clean_options: list[str] = []
    if kind == "select":
        clean_options = _options(options, check, f"{where}.options")
    elif options is not None:
        check.fail(
            "Only a select question has options.",
            code="unexpected_options",
            field=f"{where}.options",
        )
    if len(check.errors) != errors:
        return None
    question: dict[str, Any] = {
        "name": name,
        "label": clean_label,
        "type": kind,
        "required": required,
    }
    if kind == "select":
        question["options"] = clean_options
    return question


def _options(options: Any, check: _Check, where: str) -> list[str]:
    if not isinstance(options, list) or not 1 <= len(options) <= MAX_OPTIONS:
        check.fail(
            f"A select question needs a list of 1 to {MAX_OPTIONS} options.",
            code="invalid_options",
            field=where,
        )
        return []
    cleaned: list[str] = []
    for position, option in enumerate(options):
        text = _text(option, check, f"{where}[{position}]", limit=MAX_LABEL, what="An option")
        if text is None:
            continue
        if not text or text in cleaned:
            check.fail(
                "Options must be non-empty and different from each other.",
                code="invalid_options",
                field=f"{where}[{position}]",
            )
            continue
        cleaned.append(text)
    return cleaned


def _domain(value: Any, check: _Check, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        check.fail(f"{field} must be a host name.", code="invalid_type", field=field)
        return None
    if not value.strip():
        return None
    try:
        host = domains.normalise_host(value, field=field)
    except InvalidInput as error:
        check.errors.append(error)
        return None
    if host in check.reserved_hosts:
        check.fail(
            f"{host} is this installation's own host; give the program a host of its own.",
            code="host_reserved",
            field=field,
        )
        return None
    return host


_CLEANERS: dict[str, Callable[[Any, _Check, str], Any]] = {
    "portal_name": _portal_name,
    "logo_url": _logo_url,
    "brand_color": _color(DEFAULT_BRAND_COLOR),
    "accent_color": _color(DEFAULT_ACCENT_COLOR),
    "portal_texts": _portal_texts,
    "mail_sender": _mail_sender,
    "signup_approval": _signup_approval,
    "signup_fields": _signup_fields,
    "require_two_factor": _require_two_factor,
    "portal_domain": _domain,
    "tracking_domain": _domain,
}
