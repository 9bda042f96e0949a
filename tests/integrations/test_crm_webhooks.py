"""What CRMs send back: HubSpot signed webhooks and Pipedrive webhooks v2, verified on
their raw bytes and parsed into CrmChanges (pure functions, no database).

HubSpot signature values are HubSpot's own (../shared/fixtures/hubspot/
signature-test-vectors.json, copied from hubspot-api-python's tests and HubSpot's
docs); the batch body fixture is HubSpot's docs example. Pipedrive: a real
captured v2 `create.deal` delivery; the person bodies below are built in the v2
shape of Pipedrive's own examples (webhooks v2 migration guide) with the same
meta fields as the capture.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from partnerloop.integrations.crm import CrmChange
from partnerloop.integrations.hubspot import webhooks as hubspot
from partnerloop.integrations.pipedrive import webhooks as pipedrive
from partnerloop.integrations.shop import BadSignature, Delivery, Unusable, WebhookRequest
from tests.conftest import SHARED_FIXTURES

VECTORS: dict[str, Any] = json.loads(
    (SHARED_FIXTURES / "hubspot" / "signature-test-vectors.json").read_bytes()
)
CLIENT_SECRET: str = VECTORS["client_secret"]
DOCS_BATCH = (
    SHARED_FIXTURES / "hubspot" / "docs_webhook-batch-body_contact.creation.json"
).read_bytes()
DEAL_CAPTURE = (
    SHARED_FIXTURES / "pipedrive" / "captured_webhook-v2_create.deal_body.json"
).read_bytes()

URL = "https://www.example.com/webhook_uri"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at_ms(milliseconds: int) -> datetime:
    return EPOCH + timedelta(milliseconds=milliseconds)


def request(body: bytes, headers: dict[str, str], method: str = "POST") -> WebhookRequest:
    return WebhookRequest(method=method, headers=headers, query={}, body=body)


def v3_headers(signature: str, timestamp: str) -> dict[str, str]:
    return {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": timestamp}


def v3_request(
    body: bytes, *, timestamp: int, secret: str = CLIENT_SECRET, url: str = URL
) -> WebhookRequest:
    signature = hubspot.signature_v3(secret, "POST", hubspot.v3_uri(url), body, str(timestamp))
    return request(body, v3_headers(signature, str(timestamp)))


# --- HubSpot: signatures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector",
    VECTORS["vectors"],
    ids=[f"{v['version']}-{i}" for i, v in enumerate(VECTORS["vectors"])],
)
def test_every_hubspot_vector_verifies(vector):
    body = vector["request_body"].encode()
    method = vector.get("http_method", "POST")
    url = vector.get("uri", URL)
    if vector["version"] == "v3":
        headers = v3_headers(vector["expected"], vector["timestamp"])
        now = at_ms(int(vector["timestamp"])) + timedelta(seconds=42)
    else:
        headers = {
            "x-hubspot-signature": vector["expected"],
            "x-hubspot-signature-version": vector["version"],
        }
        now = datetime(2026, 1, 1, tzinfo=UTC)  # v1/v2 carry no timestamp
    delivery = hubspot.verify(
        request(body, headers, method), secrets=[CLIENT_SECRET], url=url, now=now
    )
    assert delivery.topic == "hubspot.webhook"
    # Our own signing functions give HubSpot's values exactly.
    if vector["version"] == "v1":
        assert hubspot.signature_v1(CLIENT_SECRET, body) == vector["expected"]
    elif vector["version"] == "v2":
        assert hubspot.signature_v2(CLIENT_SECRET, method, url, body) == vector["expected"]
    else:
        assert (
            hubspot.signature_v3(CLIENT_SECRET, method, url, body, vector["timestamp"])
            == vector["expected"]
        )


def test_the_docs_batch_verifies_with_its_v1_vector_and_gets_a_batch_id():
    vector = next(v for v in VECTORS["vectors"] if v.get("source"))
    assert vector["request_body"].encode() == DOCS_BATCH  # the fixture is those bytes
    delivery = hubspot.verify(
        request(
            DOCS_BATCH,
            {"x-hubspot-signature": vector["expected"], "x-hubspot-signature-version": "v1"},
        ),
        secrets=[CLIENT_SECRET],
        url=URL,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    digest = hashlib.sha256(b"62515:12345:1:1564113600000").hexdigest()
    assert delivery == Delivery(topic="hubspot.webhook", event_id=f"batch:{digest}")


def test_hex_signatures_are_compared_case_insensitively():
    vector = VECTORS["vectors"][0]
    headers = {
        "x-hubspot-signature": vector["expected"].upper(),
        "x-hubspot-signature-version": "V1",
    }
    hubspot.verify(
        request(vector["request_body"].encode(), headers),
        secrets=[CLIENT_SECRET],
        url=URL,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )


V3_VECTOR = next(v for v in VECTORS["vectors"] if v["version"] == "v3")
V3_TS = int(V3_VECTOR["timestamp"])
V3_BODY = V3_VECTOR["request_body"].encode()


def verify_v3_vector(body: bytes = V3_BODY, *, secrets=(CLIENT_SECRET,), now_ms: int = V3_TS):
    return hubspot.verify(
        request(body, v3_headers(V3_VECTOR["expected"], V3_VECTOR["timestamp"])),
        secrets=list(secrets),
        url=URL,
        now=at_ms(now_ms),
    )


@pytest.mark.parametrize(
    ("version", "signature", "mutate"),
    [
        ("v1", VECTORS["vectors"][0]["expected"], lambda b: b.replace(b"value", b"valuE")),
        ("v2", VECTORS["vectors"][2]["expected"], lambda b: b + b" "),
    ],
)
def test_a_changed_body_is_refused_v1_v2(version, signature, mutate):
    body = mutate(VECTORS["vectors"][0]["request_body"].encode())
    headers = {"x-hubspot-signature": signature, "x-hubspot-signature-version": version}
    with pytest.raises(BadSignature, match=rf"X-HubSpot-Signature \({version}\) .* does not match"):
        hubspot.verify(request(body, headers), secrets=[CLIENT_SECRET], url=URL, now=at_ms(V3_TS))


def test_a_changed_body_is_refused_v3():
    with pytest.raises(BadSignature, match="X-HubSpot-Signature-v3 signature does not match"):
        verify_v3_vector(V3_BODY.replace(b"example_value", b"example_valuf"))


def test_a_wrong_secret_is_refused():
    with pytest.raises(BadSignature, match="does not match"):
        verify_v3_vector(secrets=["zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
    with pytest.raises(BadSignature, match="does not match"):
        hubspot.verify(
            request(
                V3_BODY,
                {
                    "x-hubspot-signature": VECTORS["vectors"][0]["expected"],
                    "x-hubspot-signature-version": "v1",
                },
            ),
            secrets=["zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"],
            url=URL,
            now=at_ms(V3_TS),
        )


def test_secret_rotation_the_second_secret_matches():
    delivery = verify_v3_vector(secrets=("new-secret-not-yet-used", CLIENT_SECRET))
    assert delivery.topic == "hubspot.webhook"
    vector = VECTORS["vectors"][2]  # v2 POST
    hubspot.verify(
        request(
            vector["request_body"].encode(),
            {"x-hubspot-signature": vector["expected"], "x-hubspot-signature-version": "v2"},
        ),
        secrets=["", "new-secret-not-yet-used", CLIENT_SECRET],
        url=vector["uri"],
        now=at_ms(V3_TS),
    )


def test_a_timestamp_300_s_away_passes_301_s_is_refused_either_way():
    assert verify_v3_vector(now_ms=V3_TS + 300_000).topic == "hubspot.webhook"
    assert verify_v3_vector(now_ms=V3_TS - 300_000).topic == "hubspot.webhook"
    with pytest.raises(BadSignature, match=r"is 301\.000 s old; more than 300 s is refused"):
        verify_v3_vector(now_ms=V3_TS + 301_000)
    with pytest.raises(BadSignature, match=r"is 300\.001 s in the future"):
        verify_v3_vector(now_ms=V3_TS - 300_001)


def test_a_naive_now_is_read_as_utc():
    now = at_ms(V3_TS).replace(tzinfo=None) + timedelta(seconds=10)
    hubspot.verify(
        request(V3_BODY, v3_headers(V3_VECTOR["expected"], V3_VECTOR["timestamp"])),
        secrets=[CLIENT_SECRET],
        url=URL,
        now=now,
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing X-HubSpot-Signature-v3 header"),
        ({"x-hubspot-signature-v3": "abc="}, "missing X-HubSpot-Request-Timestamp header"),
        (
            {"x-hubspot-signature-v3": "abc=", "x-hubspot-request-timestamp": "2023-09-02"},
            "is not milliseconds since the epoch",
        ),
        ({"x-hubspot-signature": "abcdef"}, "missing X-HubSpot-Signature-Version header"),
        (
            {"x-hubspot-signature": "abcdef", "x-hubspot-signature-version": "v9"},
            "unknown X-HubSpot-Signature-Version 'v9'",
        ),
    ],
)
def test_missing_or_malformed_headers_are_refused_saying_which(headers, message):
    with pytest.raises(BadSignature, match=message):
        hubspot.verify(
            request(V3_BODY, headers), secrets=[CLIENT_SECRET], url=URL, now=at_ms(V3_TS)
        )


def test_no_secret_configured_is_refused():
    with pytest.raises(BadSignature, match="no HubSpot client secret is configured"):
        verify_v3_vector(secrets=())
    with pytest.raises(BadSignature, match="no HubSpot client secret is configured"):
        verify_v3_vector(secrets=("",))


def test_a_bad_v3_signature_does_not_fall_back_to_v1():
    """A replayed request keeps its (old) v3 headers; its v1 signature is still valid
    forever, so v3 must decide alone when present."""
    v1 = VECTORS["vectors"][0]
    headers = {
        **v3_headers(V3_VECTOR["expected"], V3_VECTOR["timestamp"]),
        "x-hubspot-signature": v1["expected"],
        "x-hubspot-signature-version": "v1",
    }
    with pytest.raises(BadSignature, match="old"):
        hubspot.verify(
            request(V3_BODY, headers),
            secrets=[CLIENT_SECRET],
            url=URL,
            now=at_ms(V3_TS) + timedelta(hours=1),
        )


def test_v3_uri_decodes_exactly_hubspots_table():
    assert (
        hubspot.v3_uri(
            "https://h.example/hook%2Fx?a=%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B&b=%20%26%3D%253A%3a"
        )
        == "https://h.example/hook/x?a=:/?@!$'()*,;&b=%20%26%3D%253A:"
    )


def test_v3_signs_over_the_decoded_uri():
    url = "https://shop.example/hooks/hubspot%3Aprod?tenant=a%40b%2Cc&name=x%20y"
    signed_over = "https://shop.example/hooks/hubspot:prod?tenant=a@b,c&name=x%20y"
    assert hubspot.v3_uri(url) == signed_over
    body = b'[{"eventId":1}]'
    timestamp = "1780000000000"
    signature = hubspot.signature_v3(CLIENT_SECRET, "POST", signed_over, body, timestamp)
    now = at_ms(1780000000000)
    hubspot.verify(
        request(body, v3_headers(signature, timestamp)), secrets=[CLIENT_SECRET], url=url, now=now
    )
    # HubSpot's SDKs sign the URL verbatim: accepted as well.
    verbatim = hubspot.signature_v3(CLIENT_SECRET, "POST", url, body, timestamp)
    hubspot.verify(
        request(body, v3_headers(verbatim, timestamp)), secrets=[CLIENT_SECRET], url=url, now=now
    )
    # Another URL (http instead of https) is another signature.
    with pytest.raises(BadSignature, match="does not match"):
        hubspot.verify(
            request(body, v3_headers(signature, timestamp)),
            secrets=[CLIENT_SECRET],
            url=url.replace("https:", "http:"),
            now=now,
        )


# --- HubSpot: batches ----------------------------------------------------------------------

BIG_CONTACT = 18446744073709551557  # > 2^64: ids stay exact
BIG_EVENT = 9007199254740993  # 2^53 + 1: a float would say ...992


def property_change_batch(attempt: int) -> bytes:
    """A batch in the shape HubSpot documents (legacy and generic subscription types)."""
    return (
        b'[{"eventId":3815443187,"subscriptionId":2245851,"portalId":62515,"appId":54321,'
        b'"occurredAt":1717171717123,"subscriptionType":"contact.propertyChange",'
        b'"attemptNumber":'
        + str(attempt).encode()
        + b',"objectId":'
        + str(BIG_CONTACT).encode()
        + b',"propertyName":"lifecyclestage","propertyValue":"customer",'
        b'"changeSource":"CRM","sourceId":"userId:1234"},'
        b'{"eventId":' + str(BIG_EVENT).encode() + b',"subscriptionId":2245852,"portalId":62515,'
        b'"appId":54321,"occurredAt":1717171718000,"subscriptionType":"contact.propertyChange",'
        b'"attemptNumber":' + str(attempt).encode() + b',"objectId":451,'
        b'"propertyName":"partner_segment","propertyValue":"","changeSource":"CRM"},'
        b'{"eventId":3815443190,"subscriptionId":2245853,"portalId":62515,"appId":54321,'
        b'"occurredAt":1717171719000,"subscriptionType":"deal.propertyChange",'
        b'"attemptNumber":' + str(attempt).encode() + b',"objectId":9001,'
        b'"propertyName":"dealstage","propertyValue":"closedwon","changeSource":"CRM"},'
        b'{"eventId":3815443191,"subscriptionId":2245854,"portalId":62515,"appId":54321,'
        b'"occurredAt":1717171720000,"subscriptionType":"object.propertyChange",'
        b'"objectTypeId":"0-1","attemptNumber":' + str(attempt).encode() + b',"objectId":452,'
        b'"propertyName":"hs_lead_status","propertyValue":"OPEN","changeSource":"API"},'
        b'{"eventId":3815443192,"subscriptionId":2245855,"portalId":62515,"appId":54321,'
        b'"occurredAt":1717171721000,"subscriptionType":"object.propertyChange",'
        b'"objectTypeId":"0-2","attemptNumber":' + str(attempt).encode() + b',"objectId":77,'
        b'"propertyName":"name","propertyValue":"Acme","changeSource":"CRM"},'
        b'{"eventId":3815443193,"subscriptionId":2245856,"portalId":62515,"appId":54321,'
        b'"occurredAt":1717171722000,"subscriptionType":"contact.deletion",'
        b'"attemptNumber":' + str(attempt).encode() + b',"objectId":453,"changeSource":"CRM"}]'
    )


def test_a_property_change_batch_parses_exactly():
    assert hubspot.parse(property_change_batch(0)) == [
        CrmChange(
            remote_id="18446744073709551557",
            values={"lifecyclestage": "customer"},
            occurred_at=datetime(2024, 5, 31, 16, 8, 37, 123000, tzinfo=UTC),
            event_id="3815443187",
        ),
        CrmChange(
            remote_id="451",
            values={"partner_segment": None},  # "" = cleared
            occurred_at=datetime(2024, 5, 31, 16, 8, 38, tzinfo=UTC),
            event_id="9007199254740993",
        ),
        # deal.propertyChange: skipped.
        CrmChange(
            remote_id="452",
            values={"hs_lead_status": "OPEN"},
            occurred_at=datetime(2024, 5, 31, 16, 8, 40, tzinfo=UTC),
            event_id="3815443191",
        ),
        # object.propertyChange of a company (0-2): skipped.
        CrmChange(
            remote_id="453",
            values={},  # other contact events: no values, the caller ignores them
            occurred_at=datetime(2024, 5, 31, 16, 8, 42, tzinfo=UTC),
            event_id="3815443193",
        ),
    ]


def test_the_docs_creation_batch_gives_a_change_without_values():
    assert hubspot.parse(DOCS_BATCH) == [
        CrmChange(
            remote_id="123",
            values={},
            occurred_at=datetime(2019, 7, 26, 4, 0, tzinfo=UTC),
            event_id="1",
        )
    ]


def test_a_redelivered_batch_has_the_same_event_id():
    first, retry = property_change_batch(0), property_change_batch(1)
    assert first != retry
    assert hubspot.batch_id(first) == hubspot.batch_id(retry)
    assert hubspot.batch_id(first).startswith("batch:")
    # Through verify, signed afresh at retry time.
    now = 1780000000000
    deliveries = [
        hubspot.verify(
            v3_request(body, timestamp=now + offset),
            secrets=[CLIENT_SECRET],
            url=URL,
            now=at_ms(now + offset),
        )
        for body, offset in ((first, 0), (retry, 60_000))
    ]
    assert deliveries[0] == deliveries[1]
    # The same events in another order are the same batch; other events are not.
    events = json.loads(first)
    assert hubspot.batch_id(json.dumps(events[::-1]).encode()) == hubspot.batch_id(first)
    assert hubspot.batch_id(json.dumps(events[:-1]).encode()) != hubspot.batch_id(first)


def test_a_body_that_is_not_a_batch_is_keyed_by_its_bytes():
    body = b"{'example_field':'example_value'}"
    assert hubspot.batch_id(body) == "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[{", "malformed JSON"),
        (b'{"eventId":1}', "not an array"),
        (b"[1]", "HubSpot event #0 is not a JSON object"),
        (
            b'[{"eventId":1,"occurredAt":1564113600000,"subscriptionType":"contact.creation"}]',
            r"HubSpot event #0 \(contact.creation\) has no objectId",
        ),
        (
            b'[{"objectId":5,"occurredAt":1564113600000,"subscriptionType":"contact.creation"}]',
            "has no eventId",
        ),
        (
            b'[{"eventId":1,"objectId":5,"subscriptionType":"contact.creation"}]',
            "has no occurredAt",
        ),
        (
            b'[{"eventId":1,"objectId":5,"occurredAt":1564113600000,'
            b'"subscriptionType":"contact.propertyChange","propertyValue":"x"}]',
            "has no propertyName",
        ),
        (
            b'[{"eventId":1,"objectId":5.5,"occurredAt":1564113600000,'
            b'"subscriptionType":"contact.creation"}]',
            "objectId is not an integer id",
        ),
    ],
)
def test_unusable_hubspot_bodies_say_why(body, reason):
    with pytest.raises(Unusable, match=reason):
        hubspot.parse(body)


def test_other_objects_events_are_skipped_even_without_object_id():
    body = b'[{"eventId":1,"occurredAt":1564113600000,"subscriptionType":"company.creation"}]'
    assert hubspot.parse(body) == []
    assert hubspot.parse(b"[]") == []


def test_a_merge_names_the_surviving_contact():
    body = (
        b'[{"eventId":7,"occurredAt":1564113600000,"subscriptionType":"contact.merge",'
        b'"primaryObjectId":456,"mergedObjectIds":[123]}]'
    )
    assert hubspot.parse(body) == [
        CrmChange(
            remote_id="456",
            values={},
            occurred_at=datetime(2019, 7, 26, 4, 0, tzinfo=UTC),
            event_id="7",
        )
    ]


# --- Pipedrive: authentication -------------------------------------------------------------

PIPEDRIVE_SECRET = "partnerloop:s3cr3t:with-colon"  # a password may hold ':'


def basic(credentials: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def pd_verify(body: bytes, headers: dict[str, str], secrets=(PIPEDRIVE_SECRET,)) -> Delivery:
    return pipedrive.verify(
        request(body, headers), secrets=list(secrets), now=datetime(2026, 5, 27, tzinfo=UTC)
    )


def test_pipedrive_right_credentials_name_topic_and_event():
    assert pd_verify(DEAL_CAPTURE, basic(PIPEDRIVE_SECRET)) == Delivery(
        topic="pipedrive.create.deal", event_id="8818e477-972e-4ddb-8d8e-cb61a933db4e"
    )
    # The scheme name is case-insensitive (RFC 7617).
    header = {"authorization": basic(PIPEDRIVE_SECRET)["authorization"].replace("Basic", "basic")}
    assert pd_verify(DEAL_CAPTURE, header).topic == "pipedrive.create.deal"


def test_pipedrive_rotation_the_second_credentials_match():
    delivery = pd_verify(
        DEAL_CAPTURE, basic(PIPEDRIVE_SECRET), secrets=("old:password", PIPEDRIVE_SECRET)
    )
    assert delivery.event_id == "8818e477-972e-4ddb-8d8e-cb61a933db4e"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing HTTP Basic credentials"),
        ({"authorization": ""}, "missing HTTP Basic credentials"),
        ({"authorization": "Bearer abc"}, "not HTTP Basic"),
        ({"authorization": "Basic"}, "not HTTP Basic"),
        ({"authorization": "Basic !!!notbase64"}, r"wrong HTTP Basic credentials \(not base64\)"),
        (basic("partnerloop:s3cr3t"), "wrong HTTP Basic credentials"),
        (basic("PARTNERLOOP:s3cr3t:with-colon"), "wrong HTTP Basic credentials"),
        (basic(PIPEDRIVE_SECRET + " "), "wrong HTTP Basic credentials"),
    ],
)
def test_pipedrive_missing_or_wrong_credentials_are_refused(headers, message):
    with pytest.raises(BadSignature, match=message):
        pd_verify(DEAL_CAPTURE, headers)


@pytest.mark.parametrize("secrets", [(), ("",), ("no-colon-here",)])
def test_pipedrive_without_credentials_configured_is_refused(secrets):
    with pytest.raises(BadSignature, match='set the connector\'s secret to "user:password"'):
        pd_verify(DEAL_CAPTURE, basic(PIPEDRIVE_SECRET), secrets=secrets)


def test_pipedrive_authenticated_garbage_is_stored_under_its_hash():
    body = b"not json"
    assert pd_verify(body, basic(PIPEDRIVE_SECRET)) == Delivery(
        topic="pipedrive.unknown", event_id="sha256:" + hashlib.sha256(body).hexdigest()
    )


# --- Pipedrive: bodies ---------------------------------------------------------------------


def test_the_captured_deal_gives_no_change():
    assert pipedrive.parse(DEAL_CAPTURE) == []


K_SEGMENT = "dcf558aac1ae4e8c4f849ba5e668430d8df9be12"
K_TIER = "d4de1c1518b4531717c676029a45911c340390a6"
K_TAGS = "3d0fa3429dfa2d3dec265b4fc5dc8258ab66cdf3"
K_BUDGET = "bdd479c3cfdb9c50bae4fa4929ae944980da55d7"
K_SCORE = "53c2f18db6a1655d6af8bba77d9679565f975fd8"
K_TRIAL = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
K_REFERRER = "1111111111222222222233333333334444444444"
K_CLEARED = "5555555555666666666677777777778888888888"
K_PLAIN = "9999999999aaaaaaaaaabbbbbbbbbbcccccccccc"
K_ADDRESS = "abcdefabcdefabcdefabcdefabcdefabcdefabcd"


def person_body(action: str = "change", attempt: int = 1) -> bytes:
    """A v2 person event: data as Pipedrive's v2 person, meta as in the real capture."""
    return (
        b"""{
  "data": {
    "add_time": "2026-05-20T09:12:03Z",
    "custom_fields": {
      \""""
        + K_SEGMENT.encode()
        + b"""\": {"type": "varchar", "value": "gold"},
      \""""
        + K_TIER.encode()
        + b"""\": {"id": 5, "type": "enum"},
      \""""
        + K_TAGS.encode()
        + b"""\": {"values": [{"id": 13}, {"id": 14}], "type": "set"},
      \""""
        + K_BUDGET.encode()
        + b"""\": {"currency": "EUR", "type": "monetary", "value": 200.50},
      \""""
        + K_SCORE.encode()
        + b"""\": {"type": "double", "value": 12.5},
      \""""
        + K_TRIAL.encode()
        + b"""\": {"from": "2026-06-06", "until": "2026-06-14", "type": "daterange"},
      \""""
        + K_REFERRER.encode()
        + b"""\": {"id": 9007199254740993, "type": "people"},
      \""""
        + K_CLEARED.encode()
        + b"""\": null,
      \""""
        + K_PLAIN.encode()
        + b"""\": 123,
      \""""
        + K_ADDRESS.encode()
        + b"""\": {"country": "Estonia", "locality": "Tallinn", "type": "address", "subpremise": "", "value": "Mustamae tee 3a, Tallinn, Estonia"}
    },
    "emails": [{"label": "work", "primary": true, "value": "ada@example.com"}],
    "first_name": "Ada",
    "id": 179,
    "is_deleted": false,
    "label_ids": [7, 3],
    "last_name": null,
    "name": "Ada Lovelace",
    "org_id": 130,
    "owner_id": 26510409,
    "phones": [],
    "update_time": "2026-05-27T06:54:41Z",
    "visible_to": 3
  },
  "previous": {"label_ids": [7]},
  "meta": {
    "action": \""""
        + action.encode()
        + b"""\",
    "company_id": "15747575",
    "correlation_id": "0f3c1a52-5d1e-4f7b-9a63-2b0c8e4d7a11",
    "entity_id": "179",
    "entity": "person",
    "id": "5b7d2e90-3c4a-4e8f-b1d2-7a9c0e6f4b35",
    "is_bulk_edit": false,
    "timestamp": "2026-05-27T06:54:41.426Z",
    "type": "general",
    "user_id": "26510409",
    "version": "2.0",
    "webhook_id": "1872755",
    "webhook_owner_id": "26510409",
    "change_source": "app",
    "permitted_user_ids": ["26510409"],
    "attempt": """
        + str(attempt).encode()
        + b""",
    "host": "playbooklab.pipedrive.com"
  }
}"""
    )


PERSON_CHANGE = CrmChange(
    remote_id="179",
    values={
        "add_time": "2026-05-20T09:12:03Z",
        "first_name": "Ada",
        "id": "179",
        "is_deleted": "false",
        "label_ids": "7;3",
        "last_name": None,
        "name": "Ada Lovelace",
        "org_id": "130",
        "owner_id": "26510409",
        "update_time": "2026-05-27T06:54:41Z",
        "visible_to": "3",
        K_SEGMENT: "gold",
        K_TIER: "5",
        K_TAGS: "13;14",
        K_BUDGET: "200.50",
        f"{K_BUDGET}_currency": "EUR",
        K_SCORE: "12.5",
        K_TRIAL: "2026-06-06",
        f"{K_TRIAL}_until": "2026-06-14",
        K_REFERRER: "9007199254740993",
        K_CLEARED: None,
        K_PLAIN: "123",
        K_ADDRESS: "Mustamae tee 3a, Tallinn, Estonia",
        f"{K_ADDRESS}_country": "Estonia",
        f"{K_ADDRESS}_locality": "Tallinn",
        f"{K_ADDRESS}_subpremise": None,
    },
    occurred_at=datetime(2026, 5, 27, 6, 54, 41, 426000, tzinfo=UTC),
    event_id="5b7d2e90-3c4a-4e8f-b1d2-7a9c0e6f4b35",
)


def test_a_person_change_parses_exactly():
    assert pipedrive.parse(person_body()) == [PERSON_CHANGE]


def test_a_person_create_parses_and_a_delete_gives_nothing():
    assert pipedrive.parse(person_body("create")) == [PERSON_CHANGE]
    deleted = json.loads(person_body("delete"))
    deleted["previous"], deleted["data"] = deleted["data"], None
    assert pipedrive.parse(json.dumps(deleted).encode()) == []


def test_a_retried_person_event_has_the_same_event_id():
    first = pd_verify(person_body(attempt=1), basic(PIPEDRIVE_SECRET))
    retry = pd_verify(person_body(attempt=2), basic(PIPEDRIVE_SECRET))
    assert (
        first
        == retry
        == Delivery(
            topic="pipedrive.change.person", event_id="5b7d2e90-3c4a-4e8f-b1d2-7a9c0e6f4b35"
        )
    )
    assert pipedrive.parse(person_body(attempt=2)) == [PERSON_CHANGE]


def test_a_non_uuid_meta_id_falls_back_to_correlation_and_timestamp():
    """Pipedrive's own `user` examples carry the user's id as meta.id and a unix
    timestamp; that id repeats for every event about the user."""
    body = (
        b'{"data": {"id": "16943176", "name": "sample"}, "previous": {"lang": "en-GB"},'
        b' "meta": {"action": "change", "company_id": "8087566",'
        b' "correlation_id": "9ab5f99c-3c16-4e2c-8ef3-1c80c4327d98", "entity_id": "16943176",'
        b' "entity": "user", "id": "16943176", "timestamp": 1669304542, "version": "2.0",'
        b' "attempt": 1}}'
    )
    assert pd_verify(body, basic(PIPEDRIVE_SECRET)) == Delivery(
        topic="pipedrive.change.user",
        event_id="9ab5f99c-3c16-4e2c-8ef3-1c80c4327d98:user:16943176:1669304542",
    )
    assert pipedrive.parse(body) == []


def test_a_unix_timestamp_is_read_too():
    body = json.loads(person_body())
    body["meta"]["timestamp"] = 1669304542
    [change] = pipedrive.parse(json.dumps(body).encode())
    assert change.occurred_at == datetime(2022, 11, 24, 15, 42, 22, tzinfo=UTC)


def test_custom_field_shapes_of_api_v2_are_read_too():
    assert pipedrive.custom_field_values("k", [123, 456]) == {"k": "123;456"}
    assert pipedrive.custom_field_values("k", {"value": Decimal("500"), "currency": "USD"}) == {
        "k": "500",
        "k_currency": "USD",
    }
    assert pipedrive.custom_field_values(
        "k",
        {
            "value": "09:00:00",
            "until": "11:00:00",
            "timezone_id": 318,
            "timezone_name": "Europe/London",
        },
    ) == {
        "k": "09:00:00",
        "k_until": "11:00:00",
        "k_timezone_id": "318",
        "k_timezone_name": "Europe/London",
    }
    assert pipedrive.custom_field_values("k", True) == {"k": "true"}
    assert pipedrive.custom_field_values("k", {"values": [], "type": "set"}) == {"k": None}


def test_a_v1_body_is_refused():
    body = (
        b'{"v": 1, "matches_filters": {"current": []}, "meta": {"v": 1, "action": "updated",'
        b' "object": "person", "id": 179, "company_id": 15747575, "user_id": 26510409,'
        b' "host": "playbooklab.pipedrive.com", "timestamp": 1523440213,'
        b' "timestamp_micro": 1523440213384700, "permitted_user_ids": [], "trans_pending": false,'
        b' "is_bulk_update": false, "webhook_id": 1872755}, "retry": 0,'
        b' "current": {"id": 179, "name": "Ada Lovelace"}, "previous": {"id": 179, "name": "Ada"},'
        b' "event": "updated.person"}'
    )
    with pytest.raises(Unusable) as refused:
        pipedrive.parse(body)
    assert str(refused.value) == (
        "Pipedrive webhooks v1 are not supported; create the webhook with version 2.0"
    )
    # Stored under its hash (v1's meta.id is the person's id, not the event's).
    assert pd_verify(body, basic(PIPEDRIVE_SECRET)) == Delivery(
        topic="pipedrive.updated.person", event_id="sha256:" + hashlib.sha256(body).hexdigest()
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[]", "not a JSON object"),
        (b"{", "malformed JSON"),
        (b'{"data": {}}', "no meta object"),
        (b'{"data": {}, "meta": {"version": "3.0"}}', "unknown Pipedrive webhook version '3.0'"),
        (
            b'{"data": null, "meta": {"version": "2.0", "entity": "person", "action": "change",'
            b' "timestamp": "2026-05-27T06:54:41Z"}}',
            "person change event without data",
        ),
        (
            b'{"data": {"name": "x"}, "meta": {"version": "2.0", "entity": "person",'
            b' "action": "create", "timestamp": "2026-05-27T06:54:41Z"}}',
            "person has no id",
        ),
        (
            b'{"data": {"id": 1}, "meta": {"version": "2.0", "entity": "person",'
            b' "action": "create"}}',
            "no meta.timestamp",
        ),
        (
            b'{"data": {"id": 1}, "meta": {"version": "2.0", "entity": "person",'
            b' "action": "create", "timestamp": "yesterday"}}',
            "is not a date-time",
        ),
    ],
)
def test_unusable_pipedrive_bodies_say_why(body, reason):
    with pytest.raises(Unusable, match=reason):
        pipedrive.parse(body)
