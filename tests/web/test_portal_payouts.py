"""Payout details on the portal: stored encrypted, shown masked, checked
(IBAN check digits), changed only with the session's token, audited."""

from __future__ import annotations

import json

from sqlalchemy import select

from partnerloop.affiliates import portal as affiliate_portal
from partnerloop.affiliates.models import Affiliate
from partnerloop.audit.models import AuditEntry
from tests.affiliates.portal_support import csrf_of, portal_program, signed_up
from tests.conftest import Server

IBAN = "NL91 ABNA 0417 1643 00"


def stored(server: Server, affiliate_id: str) -> str | None:
    with server.runtime.sessions() as db:
        return db.get_one(Affiliate, affiliate_id).payout_details_enc


def test_bank_details_are_stored_encrypted_and_shown_masked(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with signed_up(server, pid) as (client, _):
        affiliate_id = client.get(f"/portal/{pid}/api/me").json()["id"]
        form = client.get(f"/portal/{pid}/payouts")
        saved = client.post(
            f"/portal/{pid}/payouts",
            data={
                "csrf": csrf_of(form),
                "method": "bank_transfer",
                "account_holder": "Pat Partner",
                "iban": IBAN.lower(),
            },
        )
        shown = client.get(saved.headers["location"])
        bad = client.post(
            f"/portal/{pid}/payouts",
            data={
                "csrf": csrf_of(form),
                "method": "bank_transfer",
                "account_holder": "Pat Partner",
                "iban": "NL92ABNA0417164300",
            },
        )
        paypal = client.post(
            f"/portal/{pid}/payouts",
            data={"csrf": csrf_of(form), "method": "paypal", "paypal_email": "Pat@Pay.Example"},
        )
        after_paypal = client.get(f"/portal/{pid}/payouts")

    assert form.status_code == 200
    assert "You have not given payout details yet." in form.text
    assert (saved.status_code, saved.headers["location"]) == (303, f"/portal/{pid}/payouts?saved=1")
    assert "Your payout details are saved." in shown.text
    assert "Bank transfer to NL** **** **** **43 00 (Pat Partner)." in shown.text
    assert "ABNA" not in shown.text
    assert "0417" not in shown.text
    assert bad.status_code == 422
    assert "That is not a valid IBAN" in bad.text
    assert 'aria-invalid="true" aria-describedby="payout-error"' in bad.text
    assert (paypal.status_code, paypal.headers["location"]) == (
        303,
        f"/portal/{pid}/payouts?saved=1",
    )
    assert "PayPal to p***@pay.example." in after_paypal.text
    raw = stored(server, affiliate_id)
    assert raw is not None
    assert "pay.example" not in raw
    assert json.loads(server.runtime.cipher.decrypt(raw, field=affiliate_portal.PAYOUT_FIELD)) == {
        "method": "paypal",
        "paypal_email": "pat@pay.example",
    }
    with server.runtime.sessions() as db:
        entries = list(
            db.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.subject_id == affiliate_id,
                    AuditEntry.action == "affiliate.payout_details_changed",
                )
                .order_by(AuditEntry.id)
            )
        )
    assert [entry.details for entry in entries] == [
        {"method": "bank_transfer"},
        {"method": "paypal"},
    ]  # the details themselves never reach the log


def test_a_bad_iban_changes_nothing(server: Server) -> None:
    program = portal_program(server)
    pid = program["id"]
    with signed_up(server, pid) as (client, _):
        affiliate_id = client.get(f"/portal/{pid}/api/me").json()["id"]
        form = client.get(f"/portal/{pid}/payouts")
        answers = [
            client.post(
                f"/portal/{pid}/payouts",
                data={
                    "csrf": csrf_of(form),
                    "method": "bank_transfer",
                    "account_holder": holder,
                    "iban": iban,
                },
            )
            for holder, iban in (
                ("Pat", "NL91ABNA04171643"),  # too short
                ("Pat", "NL91ABNA0417164301"),  # wrong check
                ("", IBAN),  # no holder
            )
        ]
        no_method = client.post(f"/portal/{pid}/payouts", data={"csrf": csrf_of(form)})

    assert [answer.status_code for answer in answers] == [422, 422, 422]
    assert "Give the account holder" in answers[2].text
    assert no_method.status_code == 422
    assert "Choose bank transfer or PayPal." in no_method.text
    assert stored(server, affiliate_id) is None
