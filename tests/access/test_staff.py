"""Staff accounts: argon2id hashes, encrypted e-mails, clear refusals, and the
role matrix the pages and the API enforce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from partnerloop.access import staff, totp
from partnerloop.access.models import StaffUser
from partnerloop.access.roles import PERMISSIONS, Permission, Role, allows
from partnerloop.core.errors import Conflict, InvalidInput
from partnerloop.runtime import Runtime

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


def make(session: Session, runtime: Runtime, email: str, **changes: str) -> StaffUser:
    fields = {"role": "owner", "password": PASSWORD, **changes}
    return staff.create(session, runtime.cipher, staff.NewStaff(email=email, **fields), now=NOW)


def test_a_staff_account_keeps_an_argon2id_hash_and_an_encrypted_email(
    session: Session, runtime: Runtime
) -> None:
    user = make(session, runtime, "  Ada@Shop.Example ", role="finance")

    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert "ada@shop.example" not in user.email_enc
    assert staff.email_of(runtime.cipher, user) == "ada@shop.example"
    assert (user.role, user.program_id, user.id[:4]) == ("finance", None, "usr_")


def test_only_the_right_password_opens_an_active_account(
    session: Session, runtime: Runtime
) -> None:
    user = make(session, runtime, "grace@shop.example")

    def login(email: str, password: str) -> StaffUser | None:
        return staff.authenticate(session, runtime.cipher, email=email, password=password)

    assert login("Grace@Shop.Example", PASSWORD) is user
    assert login("grace@shop.example", PASSWORD + "!") is None
    assert login("nobody@shop.example", PASSWORD) is None
    user.disabled_at = NOW
    assert login("grace@shop.example", PASSWORD) is None


def test_a_hash_made_with_weaker_parameters_is_upgraded_at_login(
    session: Session, runtime: Runtime
) -> None:
    user = make(session, runtime, "weak@shop.example")
    user.password_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)

    assert staff.authenticate(session, runtime.cipher, email="weak@shop.example", password=PASSWORD)
    assert not staff.HASHER.check_needs_rehash(user.password_hash)
    assert staff.HASHER.verify(user.password_hash, PASSWORD)


@pytest.mark.parametrize(
    ("email", "changes", "code", "field"),
    [
        ("x@shop.example", {"role": "admin"}, "invalid_role", "role"),
        ("x@shop.example", {"password": "short"}, "weak_password", "password"),
        ("long@shop.example", {"password": "LONG@shop.example"}, "weak_password", "password"),
        ("x@shop.example", {"password": "x" * 1025}, "invalid_password", "password"),
        ("not an e-mail", {}, "invalid_email", "email"),
    ],
)
def test_bad_input_is_refused_with_the_reason(
    session: Session,
    runtime: Runtime,
    email: str,
    changes: dict[str, str],
    code: str,
    field: str,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        make(session, runtime, email, **changes)

    assert (refused.value.code, refused.value.field) == (code, field)
    index = runtime.cipher.blind_index(email.strip().lower(), field=staff.EMAIL_FIELD)
    assert session.scalars(select(StaffUser).where(StaffUser.email_index == index)).all() == []


def test_one_account_per_email_whatever_its_case(session: Session, runtime: Runtime) -> None:
    make(session, runtime, "linus@shop.example")

    with pytest.raises(Conflict) as taken:
        make(session, runtime, "LINUS@shop.example", role="analyst")
    assert taken.value.code == "staff_exists"


def test_the_role_matrix() -> None:
    def can(role: Role) -> set[str]:
        return {p.value for p in Permission if allows(role, p)}

    assert can(Role.OWNER) == {p.value for p in Permission}
    assert can(Role.MANAGER) == {
        "read",
        "manage_affiliates",
        "review_commissions",
        "manage_connectors",
        "manage_program",
    }
    # Finance handles money and never changes connectors; an analyst only reads.
    assert can(Role.FINANCE) == {"read", "review_commissions", "manage_payouts"}
    assert can(Role.ANALYST) == {"read"}
    assert set(PERMISSIONS) == set(Role)


def test_two_factor_is_on_only_once_a_code_confirmed_it(session: Session, runtime: Runtime) -> None:
    user = make(session, runtime, "totp@shop.example")
    uri = staff.begin_totp(runtime.cipher, user, issuer="partnerloop")
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    now = datetime(2026, 11, 24, 12, 0, 10, tzinfo=UTC)

    assert uri.startswith("otpauth://totp/partnerloop:totp@shop.example?")
    assert secret not in (user.totp_secret_enc or "")  # stored encrypted
    assert not staff.has_totp(user)
    wrong = f"{(int(totp.code_at(secret, now)) + 1) % 10**6:06d}"
    assert not staff.confirm_totp(runtime.cipher, user, wrong, now=now)
    assert not staff.has_totp(user)
    assert staff.confirm_totp(runtime.cipher, user, totp.code_at(secret, now), now=now)
    assert staff.has_totp(user)
    # The next login needs a fresh code: the one used to confirm is spent.
    assert not staff.check_totp(runtime.cipher, user, totp.code_at(secret, now), now=now)
    later = now + timedelta(seconds=30)
    assert staff.check_totp(runtime.cipher, user, totp.code_at(secret, later), now=later)
    with pytest.raises(Conflict) as again:
        staff.begin_totp(runtime.cipher, user, issuer="partnerloop")
    assert again.value.code == "totp_enabled"


def test_without_two_factor_no_code_is_accepted(session: Session, runtime: Runtime) -> None:
    user = make(session, runtime, "nototp@shop.example")
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert not staff.check_totp(runtime.cipher, user, "123456", now=now)
    assert not staff.confirm_totp(runtime.cipher, user, "123456", now=now)
