"""CRM field mappings: parsing, validation, transforms and the default mappings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from partnerloop.core.errors import InvalidInput
from partnerloop.integrations.mapping import (
    MAPPING_VERSION,
    SOURCE_FIELDS,
    BooleanLabels,
    Concat,
    FieldRule,
    Mapping,
    ValueMap,
    apply_mapping,
    default_mapping,
    mapping_to_json,
    parse_mapping,
)

ORDERED_AT = datetime(2026, 11, 24, 10, 30, tzinfo=timezone(timedelta(hours=1)))
FACTS: dict[str, Any] = {
    "email": "  Ada@Example.COM ",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "name": "Ada Lovelace",
    "customer_id": "cus_01",
    "shop_customer_id": "shop-7",
    "affiliate_id": "aff_01",
    "affiliate_name": "Babbage Reviews",
    "referred_by_affiliate": True,
    "first_order_at": ORDERED_AT,
    "last_order_at": datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
    "last_order_id": "1002",
    "order_count": 2,
    "lifetime_value": {"amount_minor": 1234, "currency": "EUR"},
    "last_order_value": {"amount_minor": 999, "currency": "EUR"},
    "coupon": "ADA10",
    "click_source": "blog.example.org",
    "sub1": "newsletter",
    "sub2": None,
    "sub3": None,
    "sub4": None,
    "sub5": None,
    "program_id": "prg_01",
    "program_name": "Main",
}


def one_field(source: str | None, *transforms: dict[str, Any]) -> dict[str, Any]:
    field: dict[str, Any] = {"target": "out", "transforms": list(transforms)}
    if source is not None:
        field["source"] = source
    return {"version": 1, "fields": [field]}


def run(source: str | None, *transforms: dict[str, Any], **facts: Any) -> Any:
    """The value one rule produces from FACTS overridden by `facts`; None when left out."""
    mapping = parse_mapping(one_field(source, *transforms))
    return apply_mapping(mapping, {**FACTS, **facts}).get("out", None)


# ---------------------------------------------------------------- transforms


@pytest.mark.parametrize(
    ("fmt", "amount", "expected"),
    [
        ("decimal", {"amount_minor": 1234, "currency": "EUR"}, "12.34"),
        ("decimal_with_currency", {"amount_minor": 1234, "currency": "EUR"}, "12.34 EUR"),
        ("minor", {"amount_minor": 1234, "currency": "EUR"}, 1234),
        ("decimal", {"amount_minor": 1234, "currency": "JPY"}, "1234"),
        ("decimal_with_currency", {"amount_minor": 5, "currency": "KWD"}, "0.005 KWD"),
        ("decimal", {"amount_minor": 10**15 + 1, "currency": "EUR"}, "10000000000000.01"),
    ],
)
def test_money_formats(fmt, amount, expected):
    assert run("lifetime_value", {"type": "money", "format": fmt}, lifetime_value=amount) == (
        expected
    )


def test_money_none_is_left_out():
    assert run(
        "last_order_value", {"type": "money", "format": "decimal"}, last_order_value=None
    ) is (None)


def test_date_formats():
    # Given 2026-11-24T10:30:00+01:00, i.e. 09:30 UTC
    utc = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    midnight_ms = (datetime(2026, 11, 24, tzinfo=UTC) - epoch) // timedelta(milliseconds=1)
    assert midnight_ms == 1795478400000

    def date(fmt: str) -> Any:
        return run("first_order_at", {"type": "date", "format": fmt})

    assert date("iso") == "2026-11-24T09:30:00Z"
    assert date("date") == "2026-11-24"
    assert date("epoch_ms") == int(utc.timestamp()) * 1000 == 1795512600000
    assert date("epoch_ms_midnight") == 1795478400000


def test_date_is_the_utc_day_and_drops_microseconds():
    late = datetime(2026, 11, 25, 0, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    iso = {"type": "date", "format": "iso"}
    day = {"type": "date", "format": "date"}
    assert run("last_order_at", iso, last_order_at=late) == "2026-11-24T23:30:00Z"
    assert run("last_order_at", day, last_order_at=late) == "2026-11-24"
    assert run("last_order_at", {"type": "date", "format": "epoch_ms"}, last_order_at=late) == (
        1795478400000 + (23 * 60 + 30) * 60_000 + 123
    )
    assert run("last_order_at", day, last_order_at=None) is None


def test_lowercase_trim_and_chain():
    assert run("email", {"type": "lowercase"}) == "  ada@example.com "
    assert run("email", {"type": "trim"}) == "Ada@Example.COM"
    assert run("email", {"type": "trim"}, {"type": "lowercase"}) == "ada@example.com"
    assert run("coupon", {"type": "trim"}, {"type": "lowercase"}, coupon=None) is None


def test_concat_skips_missing_and_empty_parts():
    names = {"type": "concat", "sources": ["first_name", "last_name"], "separator": " "}
    assert run(None, names) == "Ada Lovelace"
    assert run(None, names, first_name="  ") == "Lovelace"
    assert run(None, names, first_name=None, last_name="") is None
    subs = {"type": "concat", "sources": ["sub1", "sub2", "order_count"], "separator": "|"}
    assert run(None, subs, sub2="b") == "newsletter|b|2"
    assert run(None, {"type": "concat", "sources": ["first_name", "last_name"]}) == "Ada Lovelace"


def test_concat_with_nothing_left_is_defaulted():
    names = {"type": "concat", "sources": ["first_name", "last_name"]}
    fallback = {"type": "default", "value": "Customer"}
    assert run(None, names, fallback, first_name=None, last_name=None) == "Customer"


def test_value_map_without_default_passes_unmapped_through():
    table = {"type": "value_map", "map": {"1": "first-time", "2": "repeat"}}
    assert run("order_count", table, order_count=1) == "first-time"
    assert run("order_count", table, order_count=2) == "repeat"
    assert run("order_count", table, order_count=7) == 7
    assert run("click_source", table, click_source=None) is None


def test_value_map_with_default():
    table = {"type": "value_map", "map": {"blog.example.org": "Blog"}, "default": "Other"}
    assert run("click_source", table) == "Blog"
    assert run("click_source", table, click_source="x.example") == "Other"
    drop = {"type": "value_map", "map": {"blog.example.org": "Blog"}, "default": None}
    assert run("click_source", drop, click_source="x.example") is None


def test_value_map_compares_booleans_as_json_text():
    table = {"type": "value_map", "map": {"true": "Affiliate", "false": "Direct"}}
    assert run("referred_by_affiliate", table) == "Affiliate"
    assert run("referred_by_affiliate", table, referred_by_affiliate=False) == "Direct"


def test_default_on_none_and_empty_text():
    fallback = {"type": "default", "value": "none"}
    assert run("coupon", fallback, coupon=None) == "none"
    assert run("coupon", fallback, coupon="") == "none"
    assert run("coupon", fallback) == "ADA10"
    assert run("order_count", {"type": "default", "value": 5}, order_count=0) == 0


def test_constant():
    assert run(None, {"type": "constant", "value": "partnerloop"}) == "partnerloop"
    assert run(None, {"type": "constant", "value": 3}) == 3
    assert run(None, {"type": "constant", "value": False}) is False


def test_boolean_labels():
    labels = {"type": "boolean", "true": "yes", "false": "no"}
    assert run("referred_by_affiliate", labels) == "yes"
    assert run("referred_by_affiliate", labels, referred_by_affiliate=False) == "no"
    assert run("referred_by_affiliate", {"type": "boolean"}) is True
    assert run("referred_by_affiliate", {"type": "boolean"}, referred_by_affiliate=False) is False
    drop_false = {"type": "boolean", "true": "Affiliate", "false": None}
    assert run("referred_by_affiliate", drop_false, referred_by_affiliate=False) is None


def test_fields_without_transforms_copy_the_fact_and_leave_out_none():
    mapping = parse_mapping(
        {
            "version": 1,
            "fields": [
                {"target": "id", "source": "customer_id"},
                {"target": "count", "source": "order_count"},
                {"target": "s2", "source": "sub2"},
                {"target": "s3", "source": "sub3"},
            ],
        }
    )
    assert apply_mapping(mapping, {**FACTS, "sub3": "x"}) == {"id": "cus_01", "count": 2, "s3": "x"}
    assert apply_mapping(mapping, {}) == {}


def test_a_fact_of_the_wrong_type_is_a_caller_bug_naming_the_field():
    mapping = parse_mapping(one_field("order_count", {"type": "value_map", "map": {"1": "a"}}))
    with pytest.raises(TypeError) as caught:
        apply_mapping(mapping, {"order_count": {"amount_minor": 1}})
    assert caught.value.__notes__ == ["while mapping CRM field 'out'"]
    naive = parse_mapping(one_field("first_order_at", {"type": "date", "format": "iso"}))
    with pytest.raises(TypeError, match="aware datetime"):
        apply_mapping(naive, {"first_order_at": datetime(2026, 11, 24, 10, 0)})  # noqa: DTZ001


# ---------------------------------------------------------------- default mappings


def test_hubspot_default_mapping():
    assert apply_mapping(default_mapping("hubspot"), FACTS) == {
        "email": "ada@example.com",
        "firstname": "Ada",
        "lastname": "Lovelace",
        "partnerloop_lead_source": "Affiliate",
        "partnerloop_affiliate_id": "aff_01",
        "partnerloop_affiliate": "Babbage Reviews",
        "partnerloop_first_order_date": 1795478400000,
        "partnerloop_order_count": 2,
        "partnerloop_lifetime_value": "12.34",
        "partnerloop_last_order_id": "1002",
        "partnerloop_coupon": "ADA10",
        "partnerloop_click_source": "blog.example.org",
        "partnerloop_sub1": "newsletter",
    }


def test_salesforce_default_mapping():
    assert apply_mapping(default_mapping("salesforce"), FACTS) == {
        "Partnerloop_Customer_Id__c": "cus_01",
        "Email": "ada@example.com",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "LeadSource": "Partner Referral",
        "Partnerloop_Affiliate_Id__c": "aff_01",
        "Partnerloop_Affiliate__c": "Babbage Reviews",
        "Partnerloop_First_Order_Date__c": "2026-11-24",
        "Partnerloop_Order_Count__c": 2,
        "Partnerloop_Lifetime_Value__c": "12.34",
        "Partnerloop_Last_Order_Id__c": "1002",
        "Partnerloop_Coupon__c": "ADA10",
        "Partnerloop_Click_Source__c": "blog.example.org",
        "Partnerloop_Sub1__c": "newsletter",
    }


def test_pipedrive_default_mapping():
    assert apply_mapping(default_mapping("pipedrive"), FACTS) == {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "partnerloop_lead_source": "Affiliate",
        "partnerloop_affiliate_id": "aff_01",
        "partnerloop_affiliate": "Babbage Reviews",
        "partnerloop_first_order_date": "2026-11-24",
        "partnerloop_order_count": 2,
        "partnerloop_lifetime_value": "12.34",
        "partnerloop_last_order_id": "1002",
        "partnerloop_coupon": "ADA10",
        "partnerloop_click_source": "blog.example.org",
        "partnerloop_sub1": "newsletter",
    }


def test_salesforce_default_for_an_unreferred_customer_leaves_lead_source_alone():
    unreferred = {
        **FACTS,
        "referred_by_affiliate": False,
        "affiliate_id": None,
        "affiliate_name": None,
        "last_name": "",
        "coupon": None,
    }
    assert apply_mapping(default_mapping("salesforce"), unreferred) == {
        "Partnerloop_Customer_Id__c": "cus_01",
        "Email": "ada@example.com",
        "FirstName": "Ada",
        "LastName": "[not provided]",
        "Partnerloop_First_Order_Date__c": "2026-11-24",
        "Partnerloop_Order_Count__c": 2,
        "Partnerloop_Lifetime_Value__c": "12.34",
        "Partnerloop_Last_Order_Id__c": "1002",
        "Partnerloop_Click_Source__c": "blog.example.org",
        "Partnerloop_Sub1__c": "newsletter",
    }


@pytest.mark.parametrize("kind", ["hubspot", "salesforce", "pipedrive"])
def test_default_mappings_round_trip(kind):
    mapping = default_mapping(kind)
    assert mapping.version == MAPPING_VERSION
    assert parse_mapping(mapping_to_json(mapping)) == mapping


def test_every_transform_round_trips():
    data = {
        "version": 1,
        "fields": [
            {"target": "a", "transforms": [{"type": "constant", "value": "x"}]},
            {
                "target": "b",
                "transforms": [
                    {"type": "concat", "sources": ["first_name", "sub1"], "separator": "-"},
                    {"type": "trim"},
                    {"type": "lowercase"},
                    {"type": "value_map", "map": {"ada-x": 1, "y": None}, "default": None},
                    {"type": "default", "value": True},
                ],
            },
            {
                "target": "c",
                "source": "order_count",
                "transforms": [{"type": "value_map", "map": {"1": "one"}}],
            },
            {
                "target": "d",
                "source": "last_order_at",
                "transforms": [{"type": "date", "format": "epoch_ms"}],
            },
            {
                "target": "e",
                "source": "last_order_value",
                "transforms": [{"type": "money", "format": "minor"}],
            },
            {
                "target": "f",
                "source": "referred_by_affiliate",
                "transforms": [{"type": "boolean", "true": 1, "false": None}],
            },
            {"target": "g", "source": "program_name", "transforms": []},
        ],
    }
    mapping = parse_mapping(data)
    assert mapping_to_json(mapping) == data
    assert parse_mapping(mapping_to_json(mapping)) == mapping
    assert mapping.fields[1].transforms[0] == Concat(sources=("first_name", "sub1"), separator="-")
    assert mapping.fields[1].transforms[3] == ValueMap(
        map=(("ada-x", 1), ("y", None)), default=None, has_default=True
    )
    assert mapping.fields[5] == FieldRule(
        target="f", source="referred_by_affiliate", transforms=(BooleanLabels(1, None),)
    )


def test_transforms_may_be_omitted_and_come_back_as_an_empty_list():
    mapping = parse_mapping({"version": 1, "fields": [{"target": "x", "source": "email"}]})
    assert mapping == Mapping(version=1, fields=(FieldRule("x", "email", ()),))
    assert mapping_to_json(mapping) == {
        "version": 1,
        "fields": [{"target": "x", "source": "email", "transforms": []}],
    }


def test_source_fields_are_the_documented_facts():
    assert list(SOURCE_FIELDS) == [
        "email",
        "first_name",
        "last_name",
        "name",
        "customer_id",
        "shop_customer_id",
        "affiliate_id",
        "affiliate_name",
        "referred_by_affiliate",
        "first_order_at",
        "last_order_at",
        "last_order_id",
        "order_count",
        "lifetime_value",
        "last_order_value",
        "coupon",
        "click_source",
        "sub1",
        "sub2",
        "sub3",
        "sub4",
        "sub5",
        "program_id",
        "program_name",
    ]
    assert all(description.endswith(".") for description in SOURCE_FIELDS.values())


def test_unknown_crm_kind():
    with pytest.raises(InvalidInput) as caught:
        default_mapping("zoho")
    assert (caught.value.code, caught.value.field) == ("unknown_crm", "kind")


# ---------------------------------------------------------------- invalid mappings


def field_with(**rule: Any) -> dict[str, Any]:
    return {"version": 1, "fields": [{"target": "ok", "source": "email"}, rule]}


TWO_HUNDRED_ONE = {
    "version": 1,
    "fields": [{"target": f"f{i}", "source": "email"} for i in range(201)],
}


@pytest.mark.parametrize(
    ("data", "code", "field"),
    [
        pytest.param(
            field_with(target="x", source="emali"),
            "unknown_source_field",
            "mapping.fields[1].source",
            id="unknown-source",
        ),
        pytest.param(
            field_with(
                target="x", source="email", transforms=[{"type": "trim"}, {"type": "upper"}]
            ),
            "unknown_transform",
            "mapping.fields[1].transforms[1].type",
            id="unknown-transform",
        ),
        pytest.param(
            field_with(target="x", source="email", transforms=[{"format": "iso"}]),
            "unknown_transform",
            "mapping.fields[1].transforms[0].type",
            id="transform-without-type",
        ),
        pytest.param(
            field_with(
                target="x", source="coupon", transforms=[{"type": "money", "format": "decimal"}]
            ),
            "incompatible_transform",
            "mapping.fields[1].transforms[0].type",
            id="money-on-text",
        ),
        pytest.param(
            field_with(
                target="x", source="order_count", transforms=[{"type": "date", "format": "iso"}]
            ),
            "incompatible_transform",
            "mapping.fields[1].transforms[0].type",
            id="date-on-number",
        ),
        pytest.param(
            field_with(target="x", source="order_count", transforms=[{"type": "lowercase"}]),
            "incompatible_transform",
            "mapping.fields[1].transforms[0].type",
            id="lowercase-on-number",
        ),
        pytest.param(
            field_with(
                target="x",
                source="lifetime_value",
                transforms=[{"type": "money", "format": "minor"}, {"type": "trim"}],
            ),
            "incompatible_transform",
            "mapping.fields[1].transforms[1].type",
            id="trim-after-minor-money",
        ),
        pytest.param(
            field_with(
                target="x",
                source="referred_by_affiliate",
                transforms=[{"type": "money", "format": "minor"}],
            ),
            "incompatible_transform",
            "mapping.fields[1].transforms[0].type",
            id="money-on-boolean",
        ),
        pytest.param(
            field_with(target="x", source="coupon", transforms=[{"type": "boolean"}]),
            "incompatible_transform",
            "mapping.fields[1].transforms[0].type",
            id="boolean-on-text",
        ),
        pytest.param(
            field_with(
                target="x", transforms=[{"type": "concat", "sources": ["name", "lifetime_value"]}]
            ),
            "incompatible_transform",
            "mapping.fields[1].transforms[0].sources[1]",
            id="concat-of-money",
        ),
        pytest.param(
            field_with(target="x", source="lifetime_value"),
            "transform_required",
            "mapping.fields[1].transforms",
            id="raw-money",
        ),
        pytest.param(
            field_with(target="x", source="first_order_at", transforms=[{"type": "trim"}]),
            "incompatible_transform",
            "mapping.fields[1].transforms[0].type",
            id="trim-on-date",
        ),
        pytest.param(
            field_with(
                target="x", source="first_order_at", transforms=[{"type": "default", "value": "-"}]
            ),
            "transform_required",
            "mapping.fields[1].transforms",
            id="raw-date",
        ),
        pytest.param(
            {
                "version": 1,
                "fields": [
                    {"target": "Email", "source": "email"},
                    {"target": "email", "source": "name"},
                ],
            },
            "duplicate_target",
            "mapping.fields[1].target",
            id="duplicate-target-ignoring-case",
        ),
        pytest.param(
            field_with(target="", source="email"),
            "invalid_mapping",
            "mapping.fields[1].target",
            id="empty-target",
        ),
        pytest.param(
            field_with(target="   ", source="email"),
            "invalid_mapping",
            "mapping.fields[1].target",
            id="blank-target",
        ),
        pytest.param(
            field_with(target=" x", source="email"),
            "invalid_mapping",
            "mapping.fields[1].target",
            id="spaced-target",
        ),
        pytest.param(
            field_with(target=7, source="email"),
            "invalid_mapping",
            "mapping.fields[1].target",
            id="number-target",
        ),
        pytest.param(
            field_with(target="x" * 101, source="email"),
            "invalid_mapping",
            "mapping.fields[1].target",
            id="long-target",
        ),
        pytest.param(
            field_with(source="email"),
            "invalid_mapping",
            "mapping.fields[1].target",
            id="no-target",
        ),
        pytest.param(
            {"version": 0, "fields": [{"target": "x", "source": "email"}]},
            "invalid_mapping",
            "mapping.version",
            id="version-0",
        ),
        pytest.param(
            {"version": True, "fields": [{"target": "x", "source": "email"}]},
            "invalid_mapping",
            "mapping.version",
            id="version-true",
        ),
        pytest.param(
            {"version": "1", "fields": [{"target": "x", "source": "email"}]},
            "invalid_mapping",
            "mapping.version",
            id="version-text",
        ),
        pytest.param(
            {"version": 1, "fields": {"target": "x", "source": "email"}},
            "invalid_mapping",
            "mapping.fields",
            id="fields-not-a-list",
        ),
        pytest.param(
            {"version": 1, "fields": []}, "invalid_mapping", "mapping.fields", id="no-fields"
        ),
        pytest.param(TWO_HUNDRED_ONE, "invalid_mapping", "mapping.fields", id="201-fields"),
        pytest.param([], "invalid_mapping", "mapping", id="mapping-not-an-object"),
        pytest.param({"fields": []}, "invalid_mapping", "mapping.version", id="no-version"),
        pytest.param(
            {"version": 1, "fields": [], "name": "x"},
            "invalid_mapping",
            "mapping.name",
            id="unknown-top-key",
        ),
        pytest.param(
            field_with(target="x", source="email", trasforms=[]),
            "invalid_mapping",
            "mapping.fields[1].trasforms",
            id="unknown-rule-key",
        ),
        pytest.param(
            field_with(target="x", source="email", transforms={"type": "trim"}),
            "invalid_mapping",
            "mapping.fields[1].transforms",
            id="transforms-not-a-list",
        ),
        pytest.param(
            field_with(target="x", source="email", transforms=["trim"]),
            "invalid_mapping",
            "mapping.fields[1].transforms[0]",
            id="transform-not-an-object",
        ),
        pytest.param(
            field_with(target="x"), "invalid_mapping", "mapping.fields[1].source", id="no-source"
        ),
        pytest.param(
            field_with(target="x", transforms=[{"type": "trim"}]),
            "invalid_mapping",
            "mapping.fields[1].source",
            id="no-source-before-trim",
        ),
        pytest.param(
            field_with(target="x", source="email", transforms=[{"type": "constant", "value": "a"}]),
            "invalid_mapping",
            "mapping.fields[1].source",
            id="source-unused-by-constant",
        ),
        pytest.param(
            field_with(target="x", transforms=[{"type": "concat"}]),
            "invalid_mapping",
            "mapping.fields[1].transforms[0].sources",
            id="concat-without-sources",
        ),
        pytest.param(
            field_with(target="x", transforms=[{"type": "concat", "sources": []}]),
            "invalid_mapping",
            "mapping.fields[1].transforms[0].sources",
            id="concat-with-empty-sources",
        ),
        pytest.param(
            field_with(target="x", transforms=[{"type": "concat", "sources": ["name", "nam"]}]),
            "unknown_source_field",
            "mapping.fields[1].transforms[0].sources[1]",
            id="concat-unknown-source",
        ),
        pytest.param(
            field_with(
                target="x",
                source="email",
                transforms=[{"type": "trim"}, {"type": "constant", "value": "a"}],
            ),
            "invalid_mapping",
            "mapping.fields[1].transforms[1].type",
            id="constant-not-first",
        ),
        pytest.param(
            field_with(
                target="x",
                source="first_order_at",
                transforms=[{"type": "date", "format": "iso", "tz": "UTC"}],
            ),
            "invalid_mapping",
            "mapping.fields[1].transforms[0].tz",
            id="transform-unknown-key",
        ),
        pytest.param(
            field_with(
                target="x",
                source="first_order_at",
                transforms=[{"type": "date", "format": "rfc2822"}],
            ),
            "invalid_mapping",
            "mapping.fields[1].transforms[0].format",
            id="unknown-date-format",
        ),
        pytest.param(
            field_with(target="x", source="lifetime_value", transforms=[{"type": "money"}]),
            "invalid_mapping",
            "mapping.fields[1].transforms[0].format",
            id="money-without-format",
        ),
        pytest.param(
            field_with(target="x", source="email", transforms=[{"type": "value_map", "map": {}}]),
            "invalid_mapping",
            "mapping.fields[1].transforms[0].map",
            id="empty-value-map",
        ),
        pytest.param(
            field_with(
                target="x", source="email", transforms=[{"type": "value_map", "map": {"a": 1.5}}]
            ),
            "invalid_mapping",
            "mapping.fields[1].transforms[0].map.a",
            id="float-in-value-map",
        ),
        pytest.param(
            field_with(target="x", source="email", transforms=[{"type": "default", "value": None}]),
            "invalid_mapping",
            "mapping.fields[1].transforms[0].value",
            id="null-default",
        ),
        pytest.param(
            field_with(target="x", transforms=[{"type": "constant", "value": [1]}]),
            "invalid_mapping",
            "mapping.fields[1].transforms[0].value",
            id="list-constant",
        ),
        pytest.param(
            field_with(target="x", source="email", transforms=[{"type": "trim"}] * 21),
            "invalid_mapping",
            "mapping.fields[1].transforms",
            id="21-transforms",
        ),
    ],
)
def test_invalid_mappings_are_refused(data, code, field):
    with pytest.raises(InvalidInput) as caught:
        parse_mapping(data)
    assert (caught.value.code, caught.value.field) == (code, field)
    assert caught.value.status == 422
    assert caught.value.detail


def test_error_paths_start_at_the_given_field():
    with pytest.raises(InvalidInput) as caught:
        parse_mapping(
            {"version": 1, "fields": [{"target": "x", "source": "nope"}]}, field="crm.mapping"
        )
    assert caught.value.field == "crm.mapping.fields[0].source"


def test_version_is_the_revision_and_may_grow():
    data = {"version": 7, "fields": [{"target": "x", "source": "email"}]}
    assert parse_mapping(data).version == 7


def test_two_hundred_fields_are_accepted():
    data = {"version": 1, "fields": [{"target": f"f{i}", "source": "email"} for i in range(200)]}
    assert len(parse_mapping(data).fields) == 200
