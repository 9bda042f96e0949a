"""affiliates.portal: signup checks, outcomes and approval, login, IBANs
(rolled back after each test; both backends)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from partnerloop.access import passwords, portal_sessions
from partnerloop.affiliates import portal
from partnerloop.affiliates import service as affiliates
from partnerloop.core.clock import utcnow
from partnerloop.core.errors import InvalidInput
from partnerloop.runtime import Runtime
from tests.factories.programs import create_program

NOW = utcnow()
FIELDS: list[dict[str, object]] = [
    {
        "name": "website",
        "label": {"en": "Website", "nl": "Website"},
        "type": "url",
        "required": True,
    },
    {"name": "about", "label": "About you", "type": "textarea"},
    {"name": "channel", "label": {"en": "Channel"}, "type": "select", "options": ["blog", "tv"]},
    {"name": "adult", "label": {"en": "18+"}, "type": "checkbox", "required": True},
    {"name": "Bad Name", "type": "text"},  # not usable as a form name: left out
    {"name": "colour", "type": "radio"},  # unknown type: left out
    {"name": "empty", "type": "select", "options": []},  # a select without options: left out
]


PASSWORD = "long enough pw"


def form(
    email: str = "new@aff.example", password: str = PASSWORD, **answers: str
) -> portal.SignupForm:
    return portal.SignupForm(
        email=email, name="New Affiliate", password=password, answers=answers, accepted_terms=True
    )


def test_the_programs_fields_are_read_leniently(session: Session) -> None:
    program = create_program(session)
    program.signup_fields = FIELDS

    fields = portal.fields_of(program)

    assert [f.name for f in fields] == ["website", "about", "channel", "adult"]
    assert fields[1].label("nl") == "About you"
    assert fields[2].options == ("blog", "tv")


def test_every_problem_is_reported_at_once(session: Session) -> None:
    program = create_program(session)
    program.signup_fields = FIELDS
    bad = portal.SignupForm(
        email="not-an-email",
        name=" ",
        password="short",
        accepted_terms=False,
        answers={"website": "ftp://x.example", "channel": "radio", "about": "x" * 5001},
    )

    answers, errors = portal.check_signup(portal.fields_of(program), bad)

    assert {(e.field, e.code) for e in errors} == {
        ("email", "invalid_email"),
        ("name", "invalid_name"),
        ("password", "weak_password"),
        ("website", "invalid_url"),
        ("about", "answer_too_long"),
        ("channel", "invalid_option"),
        ("adult", "answer_required"),
        ("terms", "terms_required"),
    }
    assert answers == {}


def test_a_new_affiliate_with_auto_approval(session: Session, runtime: Runtime) -> None:
    program = create_program(session)
    program.signup_fields = FIELDS
    program.signup_approval = "auto"

    result = portal.sign_up(
        session,
        runtime.cipher,
        program_id=program.id,
        form=form(website="https://me.example", adult="on", channel="blog"),
        now=NOW,
    )

    assert result.outcome == "created"
    assert result.affiliate is not None
    assert result.affiliate.status == "approved"
    assert passwords.verify(result.affiliate.password_hash, "long enough pw")
    enrollment = affiliates.enrollment_of(
        session, program_id=program.id, affiliate_id=result.affiliate.id
    )
    assert enrollment is not None
    assert portal.signup_answers_of(runtime.cipher, enrollment) == {
        "website": "https://me.example",
        "adult": True,
        "channel": "blog",
    }
    assert "me.example" not in (enrollment.signup_answers_enc or "")
    assert (
        json.loads(
            runtime.cipher.decrypt(enrollment.signup_answers_enc or "", field="signup_answers")
        )["adult"]
        is True
    )


def test_auto_approval_never_lifts_a_suspension(session: Session, runtime: Runtime) -> None:
    manual = create_program(session)
    auto = create_program(session)
    auto.signup_approval = "auto"
    first = portal.sign_up(session, runtime.cipher, program_id=manual.id, form=form(), now=NOW)
    assert first.affiliate is not None
    assert first.affiliate.status == "pending"
    affiliates.approve(
        session, runtime.cipher, affiliate_id=first.affiliate.id, program_id=None, now=NOW
    )
    affiliates.suspend(
        session, runtime.cipher, affiliate_id=first.affiliate.id, program_id=None, now=NOW
    )

    joined = portal.sign_up(session, runtime.cipher, program_id=auto.id, form=form(), now=NOW)

    assert joined.outcome == "joined"
    assert joined.affiliate is not None
    assert joined.affiliate.status == "suspended"


def test_a_known_email_with_another_password_changes_nothing(
    session: Session, runtime: Runtime
) -> None:
    program = create_program(session)
    other = create_program(session)
    first = portal.sign_up(session, runtime.cipher, program_id=program.id, form=form(), now=NOW)
    assert first.affiliate is not None
    hashed = first.affiliate.password_hash

    again = portal.sign_up(
        session, runtime.cipher, program_id=other.id, form=form(password="someone else's"), now=NOW
    )

    assert again == portal.PortalSignUp("refused", None)
    assert first.affiliate.password_hash == hashed
    assert affiliates.program_ids_of(session, first.affiliate.id) == [program.id]


def test_a_form_with_problems_raises_the_first(session: Session, runtime: Runtime) -> None:
    program = create_program(session)

    with pytest.raises(InvalidInput) as raised:
        portal.sign_up(
            session,
            runtime.cipher,
            program_id=program.id,
            form=form(password="x@aff.example", email="x@aff.example"),
            now=NOW,
        )

    assert (raised.value.code, raised.value.field) == ("password_is_email", "password")
    assert affiliates.find_by_email(session, runtime.cipher, "x@aff.example") is None


def test_login_needs_the_password_and_the_program(session: Session, runtime: Runtime) -> None:
    program = create_program(session)
    other = create_program(session)
    portal.sign_up(session, runtime.cipher, program_id=program.id, form=form(), now=NOW)

    def login(program_id: str, email: str, password: str) -> bool:
        return (
            portal.authenticate(
                session, runtime.cipher, program_id=program_id, email=email, password=password
            )
            is not None
        )

    assert login(program.id, "NEW@aff.example", "long enough pw")
    assert not login(program.id, "new@aff.example", "long enough pW")
    assert not login(other.id, "new@aff.example", "long enough pw")
    assert not login(program.id, "nobody@aff.example", "long enough pw")


def test_portal_sessions_are_bound_to_their_program_and_expire(
    session: Session, runtime: Runtime
) -> None:
    program = create_program(session)
    other = create_program(session)
    signed = portal.sign_up(session, runtime.cipher, program_id=program.id, form=form(), now=NOW)
    assert signed.affiliate is not None
    started = portal_sessions.start(
        session, affiliate_id=signed.affiliate.id, program_id=program.id, now=NOW
    )

    def load(program_id: str, at: timedelta) -> bool:
        row = portal_sessions.load(session, started.token, program_id=program_id, now=NOW + at)
        return row is not None

    assert started.session.id != started.token  # only the hash is stored
    assert load(program.id, timedelta(hours=11))
    assert not load(other.id, timedelta(hours=11))
    assert load(program.id, timedelta(hours=22))  # idle time restarted at 11 h
    assert not load(program.id, timedelta(hours=22) + portal_sessions.IDLE + timedelta(seconds=1))
    assert not load(program.id, portal_sessions.LIFETIME)
    portal_sessions.end(session, started.session, now=NOW)
    assert not load(program.id, timedelta(hours=1))


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("NL91ABNA0417164300", True),
        ("DE89370400440532013000", True),
        ("GB82WEST12345698765432", True),
        ("BE68539007547034", True),
        ("NL91ABNA0417164301", False),  # one digit off
        ("NL19ABNA0417164300", False),  # check digits swapped
        ("NL91ABNA041716", False),  # too short
        ("91NLABNA0417164300", False),
        ("NL91ABNA04171643000000000000000000000", False),  # too long
    ],
)
def test_iban_check_digits(iban: str, valid: bool) -> None:
    assert portal.iban_is_valid(iban) is valid


def test_payout_details_are_cleaned_and_masked() -> None:
    bank = portal.check_payout_details(
        method="bank_transfer",
        account_holder=" Pat ",
        iban="nl91 abna 0417 1643 00",
        paypal_email="",
    )
    paypal = portal.check_payout_details(
        method="paypal", account_holder="", iban="", paypal_email=" Pat@Pay.Example "
    )

    assert bank == portal.PayoutDetails("bank_transfer", "Pat", "NL91ABNA0417164300")
    assert bank.masked() == "NL** **** **** **43 00"
    assert paypal.masked() == "p***@pay.example"
    with pytest.raises(InvalidInput) as raised:
        portal.check_payout_details(method="cash", account_holder="", iban="", paypal_email="")
    assert raised.value.field == "method"
