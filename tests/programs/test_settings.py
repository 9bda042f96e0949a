"""A program's settings (white label, signup, two-factor, domains): every rule,
with the field at fault; one invalid value changes nothing."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from sqlalchemy.orm import Session

from partnerloop.core.clock import utcnow
from partnerloop.core.db import transaction
from partnerloop.core.errors import Conflict
from partnerloop.programs import domains
from partnerloop.programs import settings as program_settings
from partnerloop.programs.models import Program
from partnerloop.programs.settings import SettingsInvalid
from partnerloop.runtime import Runtime
from tests.factories.programs import create_program

RESERVED = frozenset({"127.0.0.1", "localhost", "affiliates.example.org"})


def _update(session: Session, program: Program, **changes: Any) -> list[str]:
    return program_settings.update(
        session, program_id=program.id, changes=changes, now=utcnow(), reserved_hosts=RESERVED
    )


def _errors(session: Session, program: Program, **changes: Any) -> list[tuple[str | None, str]]:
    with pytest.raises(SettingsInvalid) as caught:
        _update(session, program, **changes)
    return [(error.field, error.code) for error in caught.value.errors]


def _question(**overrides: Any) -> dict[str, Any]:
    question: dict[str, Any] = {
        "name": "website",
        "label": {"en": "Your website", "nl": "Je website"},
        "type": "url",
        "required": True,
    }
    question.update(overrides)
    return question


def test_defaults_of_a_new_program(session: Session) -> None:
    program = create_program(session, name="Defaults shop")

    values = program_settings.get(session, program.id)

    assert values == program_settings.ProgramSettings(
        program_id=program.id,
        portal_name="Defaults shop",
        logo_url=None,
        brand_color="#1d4ed8",
        accent_color="#0f766e",
        portal_texts={},
        mail_sender=None,
        signup_approval="manual",
        signup_fields=[],
        require_two_factor=False,
        portal_domain=None,
        tracking_domain=None,
    )


def test_every_setting_is_stored_and_reported_as_changed(session: Session) -> None:
    program = create_program(session)
    host = f"p{secrets.token_hex(4)}.brand.example"

    changed = _update(
        session,
        program,
        portal_name="  Brand Partners ",
        logo_url="https://brand.example/logo.svg",
        brand_color="#AABBCC",
        accent_color="#112233",
        portal_texts={"welcome": {"en": " Hello ", "nl": "Hallo"}, "terms": {"en": ""}},
        mail_sender="Brand Partners <partners@brand.example>",
        signup_approval="auto",
        signup_fields=[
            _question(),
            _question(name="channel", type="select", required=False, options=["Blog", "Video"]),
        ],
        require_two_factor=True,
        portal_domain=f"Partners.{host}.",
        tracking_domain=f"go.{host}",
    )

    assert changed == list(program_settings.SETTING_NAMES)
    values = program_settings.get(session, program.id)
    assert values.portal_name == "Brand Partners"
    assert values.logo_url == "https://brand.example/logo.svg"
    assert (values.brand_color, values.accent_color) == ("#aabbcc", "#112233")
    assert values.portal_texts == {"welcome": {"en": "Hello", "nl": "Hallo"}}
    assert values.mail_sender == "Brand Partners <partners@brand.example>"
    assert values.signup_approval == "auto"
    assert values.signup_fields[1] == {
        "name": "channel",
        "label": {"en": "Your website", "nl": "Je website"},
        "type": "select",
        "required": False,
        "options": ["Blog", "Video"],
    }
    assert values.require_two_factor is True
    assert (values.portal_domain, values.tracking_domain) == (f"partners.{host}", f"go.{host}")
    assert domains.lookup(session, f"go.{host}") is not None


def test_unchanged_values_are_not_reported(session: Session) -> None:
    program = create_program(session, name="Same shop")
    _update(session, program, brand_color="#123456", signup_approval="auto")

    changed = _update(
        session,
        program,
        portal_name="Same shop",  # the default: stays "no value"
        brand_color="#123456",
        accent_color="#0f766e",
        signup_approval="auto",
        portal_texts={},
    )

    assert changed == []
    assert (program.portal_name, program.accent_color) == (None, None)


def test_null_sets_back_to_the_default(session: Session) -> None:
    program = create_program(session, name="Reset shop")
    _update(
        session,
        program,
        portal_name="Other",
        brand_color="#000000",
        logo_url="http://x.example/l.png",
    )

    changed = _update(session, program, portal_name=None, brand_color=None, logo_url="")

    assert changed == ["portal_name", "logo_url", "brand_color"]
    values = program_settings.get(session, program.id)
    assert (values.portal_name, values.brand_color, values.logo_url) == (
        "Reset shop",
        "#1d4ed8",
        None,
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"portal_name": ""}, [("portal_name", "invalid_portal_name")]),
        ({"portal_name": "x" * 201}, [("portal_name", "text_too_long")]),
        ({"portal_name": 5}, [("portal_name", "invalid_type")]),
        ({"logo_url": "javascript:alert(1)"}, [("logo_url", "invalid_logo_url")]),
        ({"logo_url": "ftp://brand.example/logo.png"}, [("logo_url", "invalid_logo_url")]),
        ({"logo_url": "https://user:pw@brand.example/l.png"}, [("logo_url", "invalid_logo_url")]),
        ({"logo_url": "https:///nohost"}, [("logo_url", "invalid_logo_url")]),
        ({"brand_color": "blue"}, [("brand_color", "invalid_color")]),
        ({"accent_color": "#12345"}, [("accent_color", "invalid_color")]),
        ({"accent_color": "#1234567"}, [("accent_color", "invalid_color")]),
        ({"portal_texts": ["welcome"]}, [("portal_texts", "invalid_type")]),
        ({"portal_texts": {"footer": {"en": "x"}}}, [("portal_texts.footer", "unknown_text")]),
        ({"portal_texts": {"welcome": "hi"}}, [("portal_texts.welcome", "invalid_type")]),
        (
            {"portal_texts": {"welcome": {"de": "Hallo"}}},
            [("portal_texts.welcome.de", "unknown_language")],
        ),
        (
            {"portal_texts": {"welcome": {"en": "x" * 2001}}},
            [("portal_texts.welcome.en", "text_too_long")],
        ),
        (
            {"portal_texts": {"terms": {"nl": "a\x00b"}}},
            [("portal_texts.terms.nl", "invalid_text")],
        ),
        ({"mail_sender": "partners@brand.example"}, [("mail_sender", "invalid_mail_sender")]),
        ({"mail_sender": "Brand <partners@brand>"}, [("mail_sender", "invalid_mail_sender")]),
        (
            {"mail_sender": "Brand <a@brand.example>, Other <b@brand.example>"},
            [("mail_sender", "invalid_mail_sender")],
        ),
        (
            {"mail_sender": "Brand <a@brand.example>\r\nBcc: x@evil.example"},
            [("mail_sender", "invalid_mail_sender")],
        ),
        ({"signup_approval": "sometimes"}, [("signup_approval", "invalid_signup_approval")]),
        ({"signup_approval": None}, [("signup_approval", "invalid_signup_approval")]),
        ({"require_two_factor": "yes"}, [("require_two_factor", "invalid_type")]),
        ({"portal_domain": "https://partners.brand.example/"}, [("portal_domain", "invalid_host")]),
        ({"tracking_domain": "localhost"}, [("tracking_domain", "invalid_host")]),
        ({"tracking_domain": "Affiliates.Example.org"}, [("tracking_domain", "host_reserved")]),
        ({"portal_domain": "127.0.0.1"}, [("portal_domain", "host_reserved")]),
        (
            {"portal_domain": "same.brand.example", "tracking_domain": "same.brand.example"},
            [("tracking_domain", "host_twice")],
        ),
        ({"colour": "#000000"}, [("colour", "unknown_setting")]),
    ],
)
def test_invalid_values_name_their_field_and_change_nothing(
    session: Session, changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    program = create_program(session, name="Strict shop")
    before = program_settings.get(session, program.id)

    # A valid change alongside (unless the case is about it): it must not be saved either.
    assert _errors(session, program, **{"portal_name": "Changed", **changes}) == expected

    assert program_settings.get(session, program.id) == before
    assert program.portal_name is None


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("website", [("signup_fields[0]", "invalid_type")]),
        (_question(name="Web Site"), [("signup_fields[0].name", "invalid_signup_field_name")]),
        (_question(name="x" * 41), [("signup_fields[0].name", "invalid_signup_field_name")]),
        (_question(name="email"), [("signup_fields[0].name", "reserved_signup_field_name")]),
        (_question(label="Website"), [("signup_fields[0].label", "invalid_signup_field_label")]),
        (_question(label={"en": "Website"}), [("signup_fields[0].label.nl", "missing_label")]),
        (
            _question(label={"en": "Website", "nl": "  "}),
            [("signup_fields[0].label.nl", "missing_label")],
        ),
        (
            _question(label={"en": "W", "nl": "W", "de": "W"}),
            [("signup_fields[0].label.de", "unknown_language")],
        ),
        (
            _question(label={"en": "W" * 201, "nl": "W"}),
            [("signup_fields[0].label.en", "text_too_long")],
        ),
        (_question(type="radio"), [("signup_fields[0].type", "invalid_signup_field_type")]),
        (_question(required="yes"), [("signup_fields[0].required", "invalid_type")]),
        (_question(options=["a"]), [("signup_fields[0].options", "unexpected_options")]),
        (_question(type="select"), [("signup_fields[0].options", "invalid_options")]),
        (_question(type="select", options=[]), [("signup_fields[0].options", "invalid_options")]),
        (
            _question(type="select", options=[str(n) for n in range(51)]),
            [("signup_fields[0].options", "invalid_options")],
        ),
        (
            _question(type="select", options=["a", "a"]),
            [("signup_fields[0].options[1]", "invalid_options")],
        ),
        (_question(hint="x"), [("signup_fields[0].hint", "unknown_key")]),
    ],
)
def test_signup_questions_are_checked_one_by_one(
    session: Session, question: Any, expected: list[tuple[str, str]]
) -> None:
    program = create_program(session)

    assert _errors(session, program, signup_fields=[question]) == expected


def test_signup_questions_have_unique_names_and_at_most_twenty(session: Session) -> None:
    program = create_program(session)

    assert _errors(session, program, signup_fields=[_question(), _question()]) == [
        ("signup_fields[1].name", "duplicate_signup_field_name")
    ]
    many = [_question(name=f"q{n}") for n in range(21)]
    assert _errors(session, program, signup_fields=many) == [
        ("signup_fields", "too_many_signup_fields")
    ]
    assert _errors(session, program, signup_fields={"name": "x"}) == [
        ("signup_fields", "invalid_type")
    ]
    assert _update(session, program, signup_fields=many[:20]) == ["signup_fields"]
    assert program.signup_fields[19]["name"] == "q19"
    assert program.signup_fields[0]["required"] is True


def test_every_invalid_value_is_reported_at_once(session: Session) -> None:
    program = create_program(session)

    errors = _errors(
        session,
        program,
        brand_color="red",
        logo_url="nope",
        signup_fields=[_question(type="radio", name="Bad")],
    )

    assert errors == [
        ("logo_url", "invalid_logo_url"),
        ("brand_color", "invalid_color"),
        ("signup_fields[0].name", "invalid_signup_field_name"),
        ("signup_fields[0].type", "invalid_signup_field_type"),
    ]


def test_a_host_of_another_program_is_a_conflict(session: Session) -> None:
    first = create_program(session)
    second = create_program(session)
    host = f"partners-{secrets.token_hex(4)}.brand.example"
    _update(session, first, portal_domain=host)

    with pytest.raises(Conflict) as caught:
        _update(session, second, tracking_domain=host.upper())

    assert (caught.value.code, caught.value.field) == ("host_taken", "tracking_domain")
    assert domains.lookup(session, host).program_id == first.id  # type: ignore[union-attr]


def test_a_host_moves_from_portal_to_tracking_in_one_change(session: Session) -> None:
    program = create_program(session)
    host = f"brand-{secrets.token_hex(4)}.example"
    _update(session, program, portal_domain=host)

    changed = _update(session, program, portal_domain=None, tracking_domain=host)

    assert changed == ["portal_domain", "tracking_domain"]
    row = domains.lookup(session, host)
    assert row is not None
    assert (row.program_id, row.purpose) == (program.id, "tracking")
    assert domains.domains_of(session, program.id) == {"tracking": host}


def test_tracking_urls_use_the_tracking_domain(session: Session) -> None:
    program = create_program(session)
    plain = create_program(session)
    host = f"go-{secrets.token_hex(4)}.brand.example"
    _update(session, program, tracking_domain=host)

    assert (
        domains.tracking_url(
            session, program_id=program.id, code="abc", public_url="https://pl.example.org"
        )
        == f"https://{host}/abc"
    )
    assert (
        domains.tracking_url(
            session, program_id=plain.id, code="abc", public_url="https://pl.example.org"
        )
        == "https://pl.example.org/r/abc"
    )
    assert domains.tracking_prefixes(
        session, [program.id, plain.id], public_url="http://127.0.0.1:8000"
    ) == {program.id: f"http://{host}/", plain.id: "http://127.0.0.1:8000/r/"}


def test_a_change_of_hosts_is_announced_after_its_commit_only(runtime: Runtime) -> None:
    host = f"p-{secrets.token_hex(4)}.brand.example"
    with transaction(runtime.sessions) as db:
        program = create_program(db)
    start = domains.changes()

    seen_before_commit: list[int] = []

    def set_then_fail() -> None:
        with transaction(runtime.sessions) as db:
            domains.set_domain(db, program_id=program.id, purpose="portal", host=host, now=utcnow())
            seen_before_commit.append(domains.changes())  # flushed, not committed
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        set_then_fail()
    after_rollback = domains.changes()
    with transaction(runtime.sessions) as db:
        unchanged = domains.set_domain(
            db, program_id=program.id, purpose="portal", host=None, now=utcnow()
        )
    after_no_change = domains.changes()
    with transaction(runtime.sessions) as db:
        domains.set_domain(db, program_id=program.id, purpose="portal", host=host, now=utcnow())
        during = domains.changes()

    assert seen_before_commit == [start]
    assert (after_rollback, unchanged, after_no_change, during) == (start, False, start, start)
    assert domains.changes() == start + 1
    with runtime.sessions() as db:
        assert domains.domains_of(db, program.id) == {"portal": host}
