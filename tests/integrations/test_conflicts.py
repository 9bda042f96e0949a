"""CRM conflict policies: decisions per policy, decide_all, parsing and the JSON round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from partnerloop.core.errors import InvalidInput
from partnerloop.integrations.conflicts import (
    POLICIES,
    Decision,
    FieldPolicy,
    Side,
    decide,
    decide_all,
    parse_policies,
    policies_to_json,
)

EARLIER = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

ALWAYS = FieldPolicy("lead_source", "always_overwrite")
NEVER = FieldPolicy("lead_source", "never_overwrite")
NEWEST = FieldPolicy("lead_source", "newest_wins")
MERGE = FieldPolicy("lead_source", "merge_lists")
CRM_FIRST = FieldPolicy("lead_source", "source_priority", ("crm", "partnerloop"))
OURS_FIRST = FieldPolicy("lead_source", "source_priority", ("partnerloop", "crm"))


def ours(value: Any, updated_at: datetime | None = None, source: str = "partnerloop") -> Side:
    return Side(value=value, updated_at=updated_at, source=source)


def crm(value: Any, updated_at: datetime | None = None, source: str = "crm") -> Side:
    return Side(value=value, updated_at=updated_at, source=source)


def kept(policy: FieldPolicy, old: Any, reason: str) -> Decision:
    return Decision(policy.field, False, old, old, policy.policy, reason)


def written(policy: FieldPolicy, old: Any, new: Any, reason: str) -> Decision:
    return Decision(policy.field, True, old, new, policy.policy, reason)


# ---------------------------------------------------------------- rules every policy shares


@pytest.mark.parametrize("policy", [ALWAYS, NEVER, NEWEST, MERGE, CRM_FIRST, OURS_FIRST])
def test_every_policy_fills_a_field_the_crm_does_not_have(policy: FieldPolicy) -> None:
    # Given a record the CRM does not have yet
    # When partnerloop has a value (and is older, and ranks last)
    decision = decide(policy, ours("Affiliate", EARLIER), None)
    # Then it is written
    reason = f"{policy.policy.replace('_', ' ')}: the CRM has no value yet"
    assert decision == written(policy, None, "Affiliate", reason)


@pytest.mark.parametrize("policy", [ALWAYS, NEVER, NEWEST, MERGE, CRM_FIRST, OURS_FIRST])
@pytest.mark.parametrize("empty", [None, "", []])
def test_every_policy_fills_an_empty_crm_value_even_a_newer_one(
    policy: FieldPolicy, empty: Any
) -> None:
    decision = decide(policy, ours("Affiliate", EARLIER), crm(empty, LATER))
    label = policy.policy.replace("_", " ")
    # merge_lists answers in the CRM's representation: an empty list stays a list.
    new = ["Affiliate"] if policy is MERGE and empty == [] else "Affiliate"
    assert decision == written(policy, empty, new, f"{label}: the CRM has no value yet")


@pytest.mark.parametrize("policy", [ALWAYS, NEVER, NEWEST, MERGE, CRM_FIRST, OURS_FIRST])
@pytest.mark.parametrize("empty", [None, "", []])
def test_no_policy_writes_a_missing_value(policy: FieldPolicy, empty: Any) -> None:
    # A missing fact never blanks a field, even with the newest time or the top rank.
    label = policy.policy.replace("_", " ")
    reason = f"{label}: partnerloop has no value to write"
    assert decide(policy, ours(empty, LATER), crm("Webinar", EARLIER)) == kept(
        policy, "Webinar", reason
    )
    assert decide(policy, ours(empty, LATER), None) == kept(policy, None, reason)


@pytest.mark.parametrize("policy", [ALWAYS, NEVER, NEWEST, MERGE, OURS_FIRST])
def test_no_policy_writes_the_value_the_crm_already_has(policy: FieldPolicy) -> None:
    decision = decide(policy, ours("Affiliate", LATER), crm("Affiliate", EARLIER))
    label = policy.policy.replace("_", " ")
    assert decision == kept(policy, "Affiliate", f"{label}: the CRM already has this value")


def test_true_and_one_are_different_values() -> None:
    decision = decide(ALWAYS, ours(True), crm(1))
    assert decision == written(
        ALWAYS, 1, True, "always overwrite: partnerloop's value replaces the CRM's"
    )


# ---------------------------------------------------------------- always_overwrite


def test_always_overwrite_replaces_a_different_value() -> None:
    decision = decide(ALWAYS, ours("Affiliate", EARLIER), crm("Webinar", LATER))
    assert decision == written(
        ALWAYS, "Webinar", "Affiliate", "always overwrite: partnerloop's value replaces the CRM's"
    )


def test_always_overwrite_names_the_source_it_was_given() -> None:
    decision = decide(ALWAYS, ours("Affiliate", source="shopify"), crm("Webinar"))
    assert decision.reason == "always overwrite: shopify's value replaces the CRM's"


# ---------------------------------------------------------------- never_overwrite


def test_never_overwrite_keeps_a_crm_value() -> None:
    decision = decide(NEVER, ours("Affiliate", LATER), crm("Webinar", EARLIER))
    assert decision == kept(NEVER, "Webinar", "never overwrite: the CRM already has a value")


# ---------------------------------------------------------------- newest_wins


def test_newest_wins_writes_a_newer_value() -> None:
    decision = decide(NEWEST, ours("Affiliate", LATER), crm("Webinar", EARLIER))
    assert decision == written(
        NEWEST,
        "Webinar",
        "Affiliate",
        "newest wins: partnerloop's value (2026-11-24 10:00 UTC) is newer than "
        "the CRM's (2026-11-20 09:00 UTC)",
    )


def test_newest_wins_keeps_a_newer_crm_value() -> None:
    decision = decide(NEWEST, ours("Affiliate", EARLIER), crm("Webinar", LATER))
    assert decision == kept(
        NEWEST,
        "Webinar",
        "newest wins: the CRM's value (2026-11-24 10:00 UTC) is newer than "
        "partnerloop's (2026-11-20 09:00 UTC)",
    )


def test_newest_wins_keeps_the_crm_value_on_equal_times_in_any_zone() -> None:
    same_moment = LATER.astimezone(timezone(timedelta(hours=1)))
    decision = decide(NEWEST, ours("Affiliate", same_moment), crm("Webinar", LATER))
    assert decision == kept(
        NEWEST,
        "Webinar",
        "newest wins: both values were updated at 2026-11-24 10:00 UTC, so the CRM's is kept",
    )


def test_newest_wins_shows_seconds_when_minutes_do_not_tell_the_times_apart() -> None:
    decision = decide(
        NEWEST, ours("Affiliate", LATER + timedelta(seconds=30)), crm("Webinar", LATER)
    )
    assert decision.write is True
    assert decision.reason == (
        "newest wins: partnerloop's value (2026-11-24 10:00:30 UTC) is newer than "
        "the CRM's (2026-11-24 10:00:00 UTC)"
    )


def test_newest_wins_reads_a_naive_time_as_utc() -> None:
    naive = datetime(2026, 11, 24, 10, 0)  # noqa: DTZ001 - the case under test
    decision = decide(NEWEST, ours("Affiliate", naive), crm("Webinar", LATER))
    assert decision.write is False
    assert decision.reason.endswith(
        "both values were updated at 2026-11-24 10:00 UTC, so the CRM's is kept"
    )


def test_newest_wins_a_value_without_time_loses_to_one_with() -> None:
    assert decide(NEWEST, ours("Affiliate", None), crm("Webinar", EARLIER)) == kept(
        NEWEST,
        "Webinar",
        "newest wins: partnerloop's value has no update time, so the CRM's is kept",
    )
    assert decide(NEWEST, ours("Affiliate", EARLIER), crm("Webinar", None)) == written(
        NEWEST,
        "Webinar",
        "Affiliate",
        "newest wins: the CRM's value has no update time, so partnerloop's is written",
    )


def test_newest_wins_keeps_the_crm_value_when_neither_has_a_time() -> None:
    assert decide(NEWEST, ours("Affiliate"), crm("Webinar")) == kept(
        NEWEST, "Webinar", "newest wins: neither value has an update time, so the CRM's is kept"
    )


# ---------------------------------------------------------------- source_priority


def test_source_priority_the_crm_ranked_first_keeps_its_value() -> None:
    decision = decide(CRM_FIRST, ours("Affiliate", LATER), crm("Webinar", EARLIER))
    assert decision == kept(CRM_FIRST, "Webinar", "source priority: crm ranks above partnerloop")


def test_source_priority_partnerloop_ranked_first_writes() -> None:
    decision = decide(OURS_FIRST, ours("Affiliate", EARLIER), crm("Webinar", LATER))
    assert decision == written(
        OURS_FIRST, "Webinar", "Affiliate", "source priority: partnerloop ranks above crm"
    )


def test_source_priority_a_ranked_crm_that_already_agrees_is_not_written() -> None:
    decision = decide(CRM_FIRST, ours("Affiliate"), crm("Affiliate"))
    assert decision == kept(
        CRM_FIRST, "Affiliate", "source priority: the CRM already has this value"
    )


def test_source_priority_ranks_free_text_sources_ignoring_case() -> None:
    policy = FieldPolicy("lead_source", "source_priority", ("Shopify", "crm"))
    decision = decide(policy, ours("Affiliate", source="shopify"), crm("Webinar"))
    assert decision == written(
        policy, "Webinar", "Affiliate", "source priority: shopify ranks above crm"
    )


def test_source_priority_an_unlisted_source_ranks_below_listed_ones() -> None:
    policy = FieldPolicy("lead_source", "source_priority", ("crm",))
    decision = decide(policy, ours("Affiliate"), crm("Webinar"))
    assert decision == kept(policy, "Webinar", "source priority: crm ranks above partnerloop")
    policy = FieldPolicy("lead_source", "source_priority", ("partnerloop",))
    decision = decide(policy, ours("Affiliate"), crm("Webinar"))
    assert decision == written(
        policy, "Webinar", "Affiliate", "source priority: partnerloop ranks above crm"
    )


def test_source_priority_neither_source_listed_keeps_the_crm_value() -> None:
    policy = FieldPolicy("lead_source", "source_priority", ("shopify",))
    decision = decide(policy, ours("Affiliate"), crm("Webinar"))
    assert decision == kept(
        policy,
        "Webinar",
        "source priority: neither partnerloop nor crm is in the priority list, "
        "so the CRM's value is kept",
    )


def test_source_priority_defaults_blank_sources_to_partnerloop_and_crm() -> None:
    decision = decide(OURS_FIRST, Side("Affiliate"), Side("Webinar"))
    assert decision == written(
        OURS_FIRST, "Webinar", "Affiliate", "source priority: partnerloop ranks above crm"
    )


# ---------------------------------------------------------------- merge_lists


def test_merge_lists_text_adds_our_missing_items_after_the_crm_items() -> None:
    decision = decide(MERGE, ours("vanilla;chocolate;mint"), crm("chocolate;strawberry"))
    assert decision == written(
        MERGE,
        "chocolate;strawberry",
        "chocolate;strawberry;vanilla;mint",
        "merge lists: partnerloop adds 2 items",
    )


def test_merge_lists_list_in_list_out() -> None:
    decision = decide(MERGE, ours(["vanilla", "chocolate"]), crm(["chocolate", "strawberry"]))
    assert decision == written(
        MERGE,
        ["chocolate", "strawberry"],
        ["chocolate", "strawberry", "vanilla"],
        "merge lists: partnerloop adds 1 item",
    )


def test_merge_lists_answers_in_the_crm_representation() -> None:
    decision = decide(MERGE, ours(["vanilla"]), crm("chocolate"))
    assert decision.new == "chocolate;vanilla"
    decision = decide(MERGE, ours("vanilla; mint"), crm(["chocolate"]))
    assert decision.new == ["chocolate", "vanilla", "mint"]


def test_merge_lists_trims_and_drops_duplicates_and_blanks() -> None:
    decision = decide(
        MERGE, ours(" mint ;vanilla;; chocolate ;mint"), crm(" chocolate ; strawberry;chocolate")
    )
    assert decision == written(
        MERGE,
        " chocolate ; strawberry;chocolate",
        "chocolate;strawberry;mint;vanilla",
        "merge lists: partnerloop adds 2 items",
    )


def test_merge_lists_compares_items_exactly_after_trimming() -> None:
    decision = decide(MERGE, ours(["Chocolate"]), crm(["chocolate"]))
    assert decision.write is True
    assert decision.new == ["chocolate", "Chocolate"]


def test_merge_lists_does_not_rewrite_when_we_add_nothing() -> None:
    # Only the CRM's spacing and duplicates would change: not worth a write.
    decision = decide(
        MERGE, ours(["strawberry ", "chocolate"]), crm("chocolate ; strawberry;chocolate")
    )
    assert decision == kept(
        MERGE,
        "chocolate ; strawberry;chocolate",
        "merge lists: the CRM already has every item of partnerloop's value",
    )


def test_merge_lists_our_items_only_fill_an_empty_crm_field_tidied() -> None:
    decision = decide(MERGE, ours(" mint;mint ; vanilla"), crm(""))
    assert decision == written(MERGE, "", "mint;vanilla", "merge lists: the CRM has no value yet")
    decision = decide(MERGE, ours(["mint", " mint"]), None)
    assert decision == written(MERGE, None, ["mint"], "merge lists: the CRM has no value yet")


def test_merge_lists_only_blank_items_is_no_value() -> None:
    decision = decide(MERGE, ours(" ; "), crm("chocolate"))
    assert decision == kept(MERGE, "chocolate", "merge lists: partnerloop has no value to write")
    assert decide(MERGE, ours([" "]), None) == kept(
        MERGE, None, "merge lists: partnerloop has no value to write"
    )


# ---------------------------------------------------------------- decide_all


def test_decide_all_sorts_by_field_and_defaults_to_always_overwrite() -> None:
    # Given policies for two fields, one of them not among ours
    policies = {"tags": FieldPolicy("tags", "merge_lists"), "owner": NEVER}
    mine = {
        "tags": ours("b"),
        "email": ours("ada@example.org"),
        "lead_source": ours("Affiliate"),
    }
    theirs = {"tags": crm("a"), "lead_source": crm("Webinar"), "owner": crm("Grace")}
    # When deciding
    decisions = decide_all(policies, mine, theirs)
    # Then one decision per field of ours, by name; unlisted fields always overwrite
    assert decisions == [
        Decision(
            "email",
            True,
            None,
            "ada@example.org",
            "always_overwrite",
            "always overwrite: the CRM has no value yet",
        ),
        Decision(
            "lead_source",
            True,
            "Webinar",
            "Affiliate",
            "always_overwrite",
            "always overwrite: partnerloop's value replaces the CRM's",
        ),
        Decision("tags", True, "a", "a;b", "merge_lists", "merge lists: partnerloop adds 1 item"),
    ]


def test_decide_all_names_decisions_by_the_policies_key() -> None:
    policies = {"owner": FieldPolicy("something_else", "never_overwrite")}
    decisions = decide_all(policies, {"owner": ours("Ada")}, {"owner": crm("Grace")})
    assert decisions == [
        Decision(
            "owner",
            False,
            "Grace",
            "Grace",
            "never_overwrite",
            "never overwrite: the CRM already has a value",
        )
    ]


def test_decide_all_with_nothing_of_ours_decides_nothing() -> None:
    assert decide_all({"tags": MERGE}, {}, {"tags": crm("a")}) == []


# ---------------------------------------------------------------- FieldPolicy


def test_field_policy_refuses_what_parse_policies_would() -> None:
    with pytest.raises(ValueError, match="unknown conflict policy 'latest'"):
        FieldPolicy("x", "latest")
    with pytest.raises(ValueError, match="priority is required for source_priority"):
        FieldPolicy("x", "source_priority")
    with pytest.raises(ValueError, match="priority is required for source_priority"):
        FieldPolicy("x", "never_overwrite", ("crm",))


# ---------------------------------------------------------------- parsing


def test_parse_policies_reads_every_policy() -> None:
    data = {
        "lead_source": {"policy": "source_priority", "priority": ["crm", "partnerloop"]},
        "tags": {"policy": "merge_lists"},
        "owner": {"policy": "never_overwrite"},
        "stage": {"policy": "newest_wins"},
        "email": {"policy": "always_overwrite"},
    }
    assert parse_policies(data) == {
        "lead_source": FieldPolicy("lead_source", "source_priority", ("crm", "partnerloop")),
        "tags": FieldPolicy("tags", "merge_lists"),
        "owner": FieldPolicy("owner", "never_overwrite"),
        "stage": FieldPolicy("stage", "newest_wins"),
        "email": FieldPolicy("email", "always_overwrite"),
    }


def test_parse_policies_accepts_the_limits() -> None:
    data = {f"f{i:03d}": {"policy": "newest_wins"} for i in range(200)}
    data["x" * 100] = data.pop("f000")
    assert len(parse_policies(data)) == 200
    assert parse_policies({}) == {}


OK = {"policy": "never_overwrite"}


@pytest.mark.parametrize(
    ("data", "code", "field"),
    [
        pytest.param([], "invalid_conflict_policy", "conflicts", id="not-an-object"),
        pytest.param(
            {f"f{i}": OK for i in range(201)}, "too_many_fields", "conflicts", id="too-many"
        ),
        pytest.param({"": OK}, "invalid_field_name", "conflicts.", id="empty-name"),
        pytest.param({" tags": OK}, "invalid_field_name", "conflicts. tags", id="spaced-name"),
        pytest.param(
            {"x" * 101: OK}, "invalid_field_name", "conflicts." + "x" * 101, id="long-name"
        ),
        pytest.param(
            {"Email": OK, "email": OK}, "duplicate_field", "conflicts.email", id="same-field"
        ),
        pytest.param(
            {"tags": "merge_lists"}, "invalid_conflict_policy", "conflicts.tags", id="not-entry"
        ),
        pytest.param(
            {"tags": {"policy": "merge_lists", "separator": ","}},
            "unknown_key",
            "conflicts.tags.separator",
            id="unknown-key",
        ),
        pytest.param({"tags": {}}, "missing_policy", "conflicts.tags.policy", id="no-policy"),
        pytest.param(
            {"tags": {"policy": "latest"}}, "unknown_policy", "conflicts.tags.policy", id="bad"
        ),
        pytest.param(
            {"tags": {"policy": None}}, "unknown_policy", "conflicts.tags.policy", id="null"
        ),
        pytest.param(
            {"lead_source": {"policy": "source_priority"}},
            "missing_priority",
            "conflicts.lead_source.priority",
            id="no-priority",
        ),
        pytest.param(
            {"tags": {"policy": "merge_lists", "priority": ["crm"]}},
            "priority_not_allowed",
            "conflicts.tags.priority",
            id="priority-elsewhere",
        ),
        pytest.param(
            {"lead_source": {"policy": "source_priority", "priority": []}},
            "invalid_priority",
            "conflicts.lead_source.priority",
            id="empty-priority",
        ),
        pytest.param(
            {"lead_source": {"policy": "source_priority", "priority": "crm"}},
            "invalid_priority",
            "conflicts.lead_source.priority",
            id="priority-text",
        ),
        pytest.param(
            {
                "lead_source": {
                    "policy": "source_priority",
                    "priority": [f"s{i}" for i in range(21)],
                }
            },
            "invalid_priority",
            "conflicts.lead_source.priority",
            id="priority-too-long",
        ),
        pytest.param(
            {"lead_source": {"policy": "source_priority", "priority": ["crm", ""]}},
            "invalid_priority",
            "conflicts.lead_source.priority[1]",
            id="empty-source",
        ),
        pytest.param(
            {"lead_source": {"policy": "source_priority", "priority": ["crm", 7]}},
            "invalid_priority",
            "conflicts.lead_source.priority[1]",
            id="number-source",
        ),
        pytest.param(
            {"lead_source": {"policy": "source_priority", "priority": ["crm ", "partnerloop"]}},
            "invalid_priority",
            "conflicts.lead_source.priority[0]",
            id="spaced-source",
        ),
        pytest.param(
            {"lead_source": {"policy": "source_priority", "priority": ["crm", "s" * 101]}},
            "invalid_priority",
            "conflicts.lead_source.priority[1]",
            id="long-source",
        ),
        pytest.param(
            {
                "lead_source": {
                    "policy": "source_priority",
                    "priority": ["crm", "partnerloop", "CRM"],
                }
            },
            "duplicate_source",
            "conflicts.lead_source.priority[2]",
            id="duplicate-source",
        ),
    ],
)
def test_parse_policies_rejects(data: Any, code: str, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_policies(data)
    assert (caught.value.code, caught.value.field) == (code, field)
    assert caught.value.status == 422


def test_parse_policies_paths_start_at_the_given_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_policies({"tags": {"policy": "merge"}}, field="connector.conflicts")
    assert (caught.value.code, caught.value.field) == (
        "unknown_policy",
        "connector.conflicts.tags.policy",
    )
    assert caught.value.detail == (
        "'merge' is not a conflict policy; use one of: source_priority, newest_wins, "
        "never_overwrite, merge_lists, always_overwrite."
    )


def test_policies_round_trip_through_json() -> None:
    data = {
        "lead_source": {"policy": "source_priority", "priority": ["shopify", "crm", "partnerloop"]},
        "tags": {"policy": "merge_lists"},
        "owner": {"policy": "never_overwrite"},
        "stage": {"policy": "newest_wins"},
        "email": {"policy": "always_overwrite"},
    }
    policies = parse_policies(data)
    assert policies_to_json(policies) == data
    assert parse_policies(policies_to_json(policies)) == policies


def test_policies_names_every_policy() -> None:
    assert POLICIES == (
        "source_priority",
        "newest_wins",
        "never_overwrite",
        "merge_lists",
        "always_overwrite",
    )
