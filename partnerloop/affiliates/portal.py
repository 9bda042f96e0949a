"""The affiliate portal's side of affiliates: signup with the program's own
questions, portal passwords, and payout details.

Signup answers and payout details are personal data: stored encrypted as JSON,
never logged, never put in an error message or the audit log.

Signing up with an e-mail that already has an account changes nothing unless
the password given opens that account (then the affiliate joins this program
too). An account that never had a portal password (made by staff through the
API) cannot be claimed by signing up with its e-mail: that would let whoever
knows the address set its password and redirect its payouts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import update
from sqlalchemy.orm import Session

from partnerloop.access import passwords
from partnerloop.access.models import PortalSession
from partnerloop.affiliates import service as affiliates
from partnerloop.affiliates.models import Affiliate, Enrollment
from partnerloop.audit import service as audit
from partnerloop.audit.service import Actor
from partnerloop.core.crypto import FieldCipher, looks_like_email, normalise_email
from partnerloop.core.errors import InvalidInput
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program

MIN_PASSWORD = 10
ANSWERS_FIELD = "signup_answers"
PAYOUT_FIELD = "payout_details"

FIELD_TYPES = ("text", "url", "textarea", "select", "checkbox")
_FIELD_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_MAX_LENGTH = {"text": 500, "url": 2000, "textarea": 5000, "select": 500, "checkbox": 0}
_CHECKED = ("on", "yes", "true", "1")


# --- signup -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignupField:
    """One of a program's own signup questions (programs.signup_fields)."""

    name: str
    labels: dict[str, str]  # language -> label
    type: str
    required: bool
    options: tuple[str, ...]

    def label(self, language: str) -> str:
        return self.labels.get(language) or self.labels.get("en") or self.name


def fields_of(program: Program) -> list[SignupField]:
    """The program's questions, in order. Entries that are not well-formed (no
    usable name, unknown type, a select without options) are left out rather
    than breaking the signup page."""
    fields: list[SignupField] = []
    seen: set[str] = set()
    for raw in program.signup_fields or []:
        if not isinstance(raw, dict):
            continue
        name, kind = raw.get("name"), raw.get("type", "text")
        if not isinstance(name, str) or not _FIELD_NAME_RE.match(name) or name in seen:
            continue
        if kind not in FIELD_TYPES:
            continue
        label = raw.get("label")
        if isinstance(label, dict):
            labels = {str(k): str(v) for k, v in label.items() if isinstance(v, str) and v}
        else:
            labels = {"en": label} if isinstance(label, str) and label else {}
        options = raw.get("options") or []
        choices = (
            tuple(str(o) for o in options if isinstance(o, str | int))
            if isinstance(options, list)
            else ()
        )
        if kind == "select" and not choices:
            continue
        seen.add(name)
        fields.append(
            SignupField(
                name=name,
                labels=labels,
                type=str(kind),
                required=bool(raw.get("required", False)),
                options=choices,
            )
        )
    return fields


@dataclass(frozen=True)
class SignupForm:
    email: str
    name: str
    password: str
    answers: Mapping[str, str]  # field name -> the raw value posted ("" or absent: empty)
    accepted_terms: bool


@dataclass(frozen=True)
class FieldError:
    """What is wrong with one field: a stable code the page translates."""

    field: str  # email | name | password | terms | a signup field's name
    code: str

    def as_error(self) -> InvalidInput:
        return InvalidInput(
            _DETAILS[self.code].format(field=self.field), code=self.code, field=self.field
        )


_DETAILS = {
    "invalid_email": "That is not an e-mail address.",
    "invalid_name": "Give a name of 1 to 200 characters.",
    "weak_password": f"The password must be at least {MIN_PASSWORD} characters.",
    "password_too_long": f"The password must be at most {passwords.MAX_PASSWORD} characters.",
    "password_is_email": "The password must not be the e-mail address.",
    "terms_required": "Accept the program's terms to sign up.",
    "answer_required": "{field} is required.",
    "answer_too_long": "{field} is too long.",
    "invalid_url": "{field} must be a web address starting with http:// or https://.",
    "invalid_option": "{field} must be one of the options offered.",
}

Answers = dict[str, str | bool]


def check_password(password: str, *, email: str) -> FieldError | None:
    if len(password) < MIN_PASSWORD:
        return FieldError("password", "weak_password")
    if len(password) > passwords.MAX_PASSWORD:
        return FieldError("password", "password_too_long")
    if normalise_email(password) == normalise_email(email):
        return FieldError("password", "password_is_email")
    return None


def _check_answer(field: SignupField, raw: str | None) -> tuple[str | bool | None, str | None]:
    """(the answer to store or None, an error code or None)."""
    value = (raw or "").strip()
    if field.type == "checkbox":
        checked = value.lower() in _CHECKED
        if field.required and not checked:
            return None, "answer_required"
        return checked, None
    if not value:
        return None, "answer_required" if field.required else None
    if len(value) > _MAX_LENGTH[field.type]:
        return None, "answer_too_long"
    if field.type == "url":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None, "invalid_url"
    if field.type == "select" and value not in field.options:
        return None, "invalid_option"
    return value, None


def check_signup(
    fields: Sequence[SignupField], form: SignupForm
) -> tuple[Answers, list[FieldError]]:
    """The answers to store and every problem with the form (empty: all good)."""
    errors: list[FieldError] = []
    if not looks_like_email(form.email):
        errors.append(FieldError("email", "invalid_email"))
    if not form.name.strip() or len(form.name.strip()) > 200:
        errors.append(FieldError("name", "invalid_name"))
    password_error = check_password(form.password, email=form.email)
    if password_error is not None:
        errors.append(password_error)
    answers: Answers = {}
    for field in fields:
        value, code = _check_answer(field, form.answers.get(field.name))
        if code is not None:
            errors.append(FieldError(field.name, code))
        elif value is not None:
            answers[field.name] = value
    if not form.accepted_terms:
        errors.append(FieldError("terms", "terms_required"))
    return answers, errors


@dataclass(frozen=True)
class PortalSignUp:
    # created: a new account; joined: the e-mail's own password, now (also) in
    # this program; refused: the e-mail has an account this password does not open.
    outcome: Literal["created", "joined", "refused"]
    affiliate: Affiliate | None  # None when refused


def sign_up(
    session: Session, cipher: FieldCipher, *, program_id: str, form: SignupForm, now: datetime
) -> PortalSignUp:
    """An affiliate signs up on a program's portal. Approved at once when the
    program says so (signup_approval "auto"), else pending staff review; an
    affiliate who was rejected or suspended is never approved by signing up."""
    program = programs.get_or_raise(session, program_id)
    answers, errors = check_signup(fields_of(program), form)
    if errors:
        raise errors[0].as_error()
    existing = affiliates.find_by_email(session, cipher, form.email)
    if existing is not None:
        # The same argon2 work as hashing a new password: the answer's timing
        # does not tell a known e-mail from a new one.
        if not passwords.verify(existing.password_hash, form.password):
            return PortalSignUp("refused", None)
        if affiliates.enrollment_of(session, program_id=program_id, affiliate_id=existing.id):
            return PortalSignUp("joined", existing)  # a member already: nothing to change
    signed = affiliates.sign_up(
        session, cipher, program_id=program_id, email=form.email, name=form.name, now=now
    )
    affiliate = signed.affiliate
    if signed.created:
        affiliate.password_hash = passwords.hash_password(form.password)
    enrollment = affiliates.enrollment_of(session, program_id=program_id, affiliate_id=affiliate.id)
    assert enrollment is not None
    enrollment.signup_answers_enc = cipher.encrypt(
        json.dumps(answers, sort_keys=True), field=ANSWERS_FIELD
    )
    if program.signup_approval == "auto" and affiliate.status == "pending":
        affiliates.approve(
            session, cipher, affiliate_id=affiliate.id, program_id=program_id, now=now
        )
    audit.record(
        session,
        Actor("affiliate", affiliate.id),
        action="affiliate.signed_up" if signed.created else "affiliate.joined_program",
        subject_kind="affiliate",
        subject_id=affiliate.id,
        program_id=program_id,
        now=now,
        details={"approval": program.signup_approval, "status": affiliate.status},
    )
    return PortalSignUp("created" if signed.created else "joined", affiliate)


def signup_answers_of(cipher: FieldCipher, enrollment: Enrollment) -> Answers:
    if enrollment.signup_answers_enc is None:
        return {}
    loaded = json.loads(cipher.decrypt(enrollment.signup_answers_enc, field=ANSWERS_FIELD))
    return dict(loaded) if isinstance(loaded, dict) else {}


# --- login --------------------------------------------------------------------------------


def email_index(cipher: FieldCipher, email: str) -> str:
    """What throttling names an account by (never the e-mail itself)."""
    return cipher.blind_index(normalise_email(email), field=affiliates.EMAIL_FIELD)


def authenticate(
    session: Session, cipher: FieldCipher, *, program_id: str, email: str, password: str
) -> Affiliate | None:
    """The affiliate these credentials open on this program's portal, else None
    (the same work and the same answer for an unknown e-mail, a wrong password
    and an affiliate of another program). Pending, rejected and suspended
    affiliates get in too: the portal shows them their status."""
    affiliate = affiliates.find_by_email(session, cipher, email)
    stored = affiliate.password_hash if affiliate is not None else None
    if not passwords.verify(stored, password) or affiliate is None or stored is None:
        return None
    if affiliates.enrollment_of(session, program_id=program_id, affiliate_id=affiliate.id) is None:
        return None
    if passwords.needs_rehash(stored):
        affiliate.password_hash = passwords.hash_password(password)
    return affiliate


def member(session: Session, *, program_id: str, affiliate_id: str) -> Affiliate | None:
    """The affiliate, if (still) enrolled in the program."""
    affiliate = session.get(Affiliate, affiliate_id)
    if affiliate is None:
        return None
    if affiliates.enrollment_of(session, program_id=program_id, affiliate_id=affiliate_id) is None:
        return None
    return affiliate


def set_language(affiliate: Affiliate, language: str, *, allowed: Sequence[str]) -> None:
    if language not in allowed:
        raise InvalidInput(
            f"language must be one of {', '.join(allowed)}.",
            code="invalid_language",
            field="language",
        )
    affiliate.language = language


# --- payout details -----------------------------------------------------------------------

PAYOUT_METHODS = ("bank_transfer", "paypal")
_IBAN_RE = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")


@dataclass(frozen=True)
class PayoutDetails:
    method: str  # bank_transfer | paypal
    account_holder: str | None = None
    iban: str | None = None
    paypal_email: str | None = None

    def masked(self) -> str:
        """For showing back: enough to recognise, not enough to copy."""
        if self.method == "paypal" and self.paypal_email:
            local, _, domain = self.paypal_email.partition("@")
            return f"{local[:1]}***@{domain}"
        if self.iban:
            return mask_iban(self.iban)
        return ""


def normalise_iban(raw: str) -> str:
    return re.sub(r"[\s-]", "", raw).upper()


def iban_is_valid(iban: str) -> bool:
    """ISO 13616: the shape, then the check digits (mod 97 of the rearranged number is 1)."""
    if not _IBAN_RE.match(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(char, 36)) for char in rearranged)
    return int(digits) % 97 == 1


def mask_iban(iban: str) -> str:
    """NL91ABNA0417164300 -> 'NL** **** **** **43 00': the country and the last four."""
    hidden = iban[:2] + "*" * (len(iban) - 6) + iban[-4:]
    return " ".join(hidden[i : i + 4] for i in range(0, len(hidden), 4))


def check_payout_details(
    *, method: str, account_holder: str, iban: str, paypal_email: str
) -> PayoutDetails:
    if method == "bank_transfer":
        holder = account_holder.strip()
        if not holder or len(holder) > 200:
            raise InvalidInput(
                "Give the account holder's name (1 to 200 characters).",
                code="invalid_account_holder",
                field="account_holder",
            )
        cleaned = normalise_iban(iban)
        if not iban_is_valid(cleaned):
            raise InvalidInput(
                "That is not a valid IBAN; check it against your bank statement.",
                code="invalid_iban",
                field="iban",
            )
        return PayoutDetails(method=method, account_holder=holder, iban=cleaned)
    if method == "paypal":
        email = normalise_email(paypal_email)
        if not looks_like_email(email):
            raise InvalidInput(
                "That is not an e-mail address.", code="invalid_paypal_email", field="paypal_email"
            )
        return PayoutDetails(method=method, paypal_email=email)
    raise InvalidInput(
        "Choose bank transfer or PayPal.", code="invalid_payout_method", field="method"
    )


def set_payout_details(
    session: Session,
    cipher: FieldCipher,
    *,
    affiliate: Affiliate,
    details: PayoutDetails,
    program_id: str,
    now: datetime,
) -> None:
    affiliate.payout_details_enc = cipher.encrypt(
        json.dumps({k: v for k, v in asdict(details).items() if v is not None}, sort_keys=True),
        field=PAYOUT_FIELD,
    )
    # Who changed where money goes, and when (the details themselves stay out of the log).
    audit.record(
        session,
        Actor("affiliate", affiliate.id),
        action="affiliate.payout_details_changed",
        subject_kind="affiliate",
        subject_id=affiliate.id,
        program_id=program_id,
        now=now,
        details={"method": details.method},
    )


def payout_details_of(cipher: FieldCipher, affiliate: Affiliate) -> PayoutDetails | None:
    if affiliate.payout_details_enc is None:
        return None
    data = json.loads(cipher.decrypt(affiliate.payout_details_enc, field=PAYOUT_FIELD))
    return PayoutDetails(
        method=str(data.get("method", "")),
        account_holder=data.get("account_holder"),
        iban=data.get("iban"),
        paypal_email=data.get("paypal_email"),
    )


def set_password(
    session: Session, cipher: FieldCipher, affiliate: Affiliate, password: str, *, now: datetime
) -> FieldError | None:
    """A new portal password (checked like at signup); every open portal session
    of the affiliate ends. Also how an affiliate staff signed up (no password
    yet) gets one: through a reset link sent to their own e-mail."""
    email = affiliates.view(session, cipher, affiliate).email
    problem = check_password(password, email=email)
    if problem is not None:
        return problem
    affiliate.password_hash = passwords.hash_password(password)
    session.execute(
        update(PortalSession)
        .where(PortalSession.affiliate_id == affiliate.id, PortalSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    return None
