"""CRM conflict policies: what to write when a field differs between partnerloop and the CRM.

Pure: no database, no HTTP. The sync reads the CRM's current values, calls
`decide_all` with partnerloop's values, writes the fields whose Decision says
`write`, and records every Decision (written or not) in the sync log, so a
merchant can see what changed, from which value to which, and why.

The JSON format, one entry per CRM field (the same names as the mapping's
targets); a field without an entry uses `always_overwrite`::

    {"lead_source": {"policy": "source_priority", "priority": ["crm", "partnerloop"]},
     "hs_lead_status": {"policy": "never_overwrite"},
     "lifecyclestage": {"policy": "newest_wins"},
     "interests": {"policy": "merge_lists"}}

- At most 200 fields. A field name is 1 to 100 characters without surrounding
  spaces, unique ignoring case (Salesforce API names are case-insensitive).
- `policy` (required) is one of POLICIES.
- `priority` is given exactly for `source_priority`: 1 to 20 unique source
  names (compared ignoring case), each 1 to 100 characters without
  surrounding spaces. Any other key is refused.

Every policy shares three rules:

- A value is missing when it is null, "" or an empty list. A missing value is
  never written (a missing fact never blanks a field the merchant filled by
  hand) and never wins over a present one.
- When the CRM has no value yet (no record, no such field, or a missing
  value), partnerloop's value is written if it has one.
- Nothing is written when the CRM already has the value that would be written.

The policies, when both sides have a value:

- `source_priority`: the side whose source comes first in `priority` wins.
  partnerloop's side has source "partnerloop" and the CRM's "crm", but a
  merchant may rank any source the sync passes (e.g. "shopify" for a value
  partnerloop took from the shop). A source not in the list ranks below all
  listed ones; when both rank the same, the CRM's value is kept.
- `newest_wins`: the side updated later wins. A side without an update time
  loses to one with; equal times (or none on either side) keep the CRM's
  value, the stable choice that cannot flip-flop between two syncs.
- `never_overwrite`: the CRM's value is kept; partnerloop only fills an empty field.
- `merge_lists`: the union of both sides: the CRM's items first in their
  order, then partnerloop's not already present. Values are lists or text
  separated by ";" (HubSpot multi-checkbox values look like
  "chocolate;strawberry"); items are trimmed, blank ones and duplicates
  dropped, and compared exactly. The result uses the CRM's representation
  (text stays text, a list stays a list). It is written only when
  partnerloop adds an item the CRM lacks; tidying the CRM's own spacing or
  duplicates alone is not worth a write.
- `always_overwrite` (the default): partnerloop's value is written whenever it differs.
"""

from __future__ import annotations

import collections.abc
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, NoReturn

from partnerloop.core.clock import ensure_utc
from partnerloop.core.errors import InvalidInput

SOURCE_PRIORITY: Final = "source_priority"
NEWEST_WINS: Final = "newest_wins"
NEVER_OVERWRITE: Final = "never_overwrite"
MERGE_LISTS: Final = "merge_lists"
ALWAYS_OVERWRITE: Final = "always_overwrite"
POLICIES: Final = (SOURCE_PRIORITY, NEWEST_WINS, NEVER_OVERWRITE, MERGE_LISTS, ALWAYS_OVERWRITE)
DEFAULT_POLICY: Final = ALWAYS_OVERWRITE

MAX_FIELDS: Final = 200
MAX_FIELD_NAME: Final = 100
MAX_SOURCES: Final = 20
MAX_SOURCE_NAME: Final = 100
LIST_SEPARATOR: Final = ";"

OURS_SOURCE: Final = "partnerloop"
THEIRS_SOURCE: Final = "crm"

_LABELS: Final = {
    SOURCE_PRIORITY: "source priority",
    NEWEST_WINS: "newest wins",
    NEVER_OVERWRITE: "never overwrite",
    MERGE_LISTS: "merge lists",
    ALWAYS_OVERWRITE: "always overwrite",
}


@dataclass(frozen=True)
class FieldPolicy:
    field: str
    policy: str
    priority: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Programmer errors only: merchant input goes through parse_policies first.
        if self.policy not in POLICIES:
            raise ValueError(f"unknown conflict policy {self.policy!r}")
        if (self.policy == SOURCE_PRIORITY) != bool(self.priority):
            raise ValueError("priority is required for source_priority and only for it")


@dataclass(frozen=True)
class Side:
    value: Any
    updated_at: datetime | None = None
    source: str = ""


@dataclass(frozen=True)
class Decision:
    field: str
    write: bool
    old: Any
    new: Any
    policy: str
    reason: str


# ---------------------------------------------------------------- deciding


def _has_value(value: Any) -> bool:
    if value is None or value == "":
        return False
    return not (isinstance(value, list | tuple) and not value)


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python, but a CRM checkbox and a number field are different values.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _when(moment: datetime, other: datetime) -> str:
    """Minutes are enough to read a sync log; more digits only when needed to tell two apart."""
    moment, other = ensure_utc(moment), ensure_utc(other)
    for pattern in ("%Y-%m-%d %H:%M UTC", "%Y-%m-%d %H:%M:%S UTC"):
        if moment.strftime(pattern) != other.strftime(pattern) or moment == other:
            return moment.strftime(pattern)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


class _Decider:
    def __init__(self, policy: FieldPolicy, ours: Side, theirs: Side | None) -> None:
        self.policy = policy
        self.ours = ours
        self.old = theirs.value if theirs is not None else None
        self.label = _LABELS[policy.policy]

    def keep(self, reason: str) -> Decision:
        return self._decision(False, self.old, reason)

    def write(self, new: Any, reason: str) -> Decision:
        if _same(new, self.old):
            return self.keep("the CRM already has this value")
        return self._decision(True, new, reason)

    def _decision(self, write: bool, new: Any, reason: str) -> Decision:
        return Decision(
            field=self.policy.field,
            write=write,
            old=self.old,
            new=new,
            policy=self.policy.policy,
            reason=f"{self.label}: {reason}",
        )


def _ours_name(ours: Side) -> str:
    return ours.source or OURS_SOURCE


def decide(policy: FieldPolicy, ours: Side, theirs: Side | None) -> Decision:
    """What to write to one CRM field. `theirs` is None when the CRM has no such record or field."""
    d = _Decider(policy, ours, theirs)
    name = _ours_name(ours)
    merging = policy.policy == MERGE_LISTS
    if not _has_value(ours.value) or (merging and not _items(ours.value)):
        return d.keep(f"{name} has no value to write")
    if theirs is None or not _has_value(theirs.value):
        new = ours.value
        if merging:
            # An empty CRM field still tells its representation ("" is text, [] a list).
            shape = ours.value if theirs is None or theirs.value is None else theirs.value
            new = _merge([], ours.value, shape)
        return d.write(new, "the CRM has no value yet")
    if _same(ours.value, theirs.value):
        return d.keep("the CRM already has this value")
    if policy.policy == NEVER_OVERWRITE:
        return d.keep("the CRM already has a value")
    if policy.policy == SOURCE_PRIORITY:
        return _source_priority(d, policy, ours, theirs)
    if policy.policy == NEWEST_WINS:
        return _newest_wins(d, ours, theirs)
    if merging:
        return _merge_lists(d, ours, theirs)
    return d.write(ours.value, f"{name}'s value replaces the CRM's")


def _source_priority(d: _Decider, policy: FieldPolicy, ours: Side, theirs: Side) -> Decision:
    ranks = {source.casefold(): rank for rank, source in enumerate(policy.priority)}
    ours_source = _ours_name(ours)
    theirs_source = theirs.source or THEIRS_SOURCE
    unranked = len(ranks)
    ours_rank = ranks.get(ours_source.casefold(), unranked)
    theirs_rank = ranks.get(theirs_source.casefold(), unranked)
    if ours_rank < theirs_rank:
        return d.write(ours.value, f"{ours_source} ranks above {theirs_source}")
    if theirs_rank < ours_rank:
        return d.keep(f"{theirs_source} ranks above {ours_source}")
    if ours_rank == unranked:
        return d.keep(
            f"neither {ours_source} nor {theirs_source} is in the priority list, "
            "so the CRM's value is kept"
        )
    return d.keep(f"{ours_source} and {theirs_source} rank the same, so the CRM's value is kept")


def _newest_wins(d: _Decider, ours: Side, theirs: Side) -> Decision:
    name = _ours_name(ours)
    mine, crm = ours.updated_at, theirs.updated_at
    if mine is None and crm is None:
        return d.keep("neither value has an update time, so the CRM's is kept")
    if mine is None:
        return d.keep(f"{name}'s value has no update time, so the CRM's is kept")
    if crm is None:
        return d.write(ours.value, f"the CRM's value has no update time, so {name}'s is written")
    if ensure_utc(mine) > ensure_utc(crm):
        return d.write(
            ours.value,
            f"{name}'s value ({_when(mine, crm)}) is newer than the CRM's ({_when(crm, mine)})",
        )
    if ensure_utc(mine) < ensure_utc(crm):
        return d.keep(
            f"the CRM's value ({_when(crm, mine)}) is newer than {name}'s ({_when(mine, crm)})"
        )
    return d.keep(f"both values were updated at {_when(mine, crm)}, so the CRM's is kept")


def _items(value: Any) -> list[Any]:
    """A list value's items, trimmed, without blanks or duplicates, in their first order."""
    if value is None:
        raw: list[Any] = []
    elif isinstance(value, str):
        raw = value.split(LIST_SEPARATOR)
    elif isinstance(value, list | tuple):
        raw = list(value)
    else:
        raw = [value]  # a lone number or flag: one item
    items: list[Any] = []
    for item in raw:
        if isinstance(item, str):
            item = item.strip()
        if _has_value(item) and not any(_same(item, seen) for seen in items):
            items.append(item)
    return items


def _merge(crm_items: list[Any], ours: Any, shape: Any) -> Any:
    """The CRM's items then ours not among them, in the representation of `shape`."""
    merged = list(crm_items)
    for item in _items(ours):
        if not any(_same(item, seen) for seen in merged):
            merged.append(item)
    if isinstance(shape, list | tuple):
        return merged
    return LIST_SEPARATOR.join(str(item) for item in merged)


def _merge_lists(d: _Decider, ours: Side, theirs: Side) -> Decision:
    name = _ours_name(ours)
    crm_items = _items(theirs.value)
    added = [item for item in _items(ours.value) if not any(_same(item, c) for c in crm_items)]
    if not added:
        return d.keep(f"the CRM already has every item of {name}'s value")
    count = "1 item" if len(added) == 1 else f"{len(added)} items"
    return d.write(_merge(crm_items, ours.value, theirs.value), f"{name} adds {count}")


def decide_all(
    policies: collections.abc.Mapping[str, FieldPolicy],
    ours: collections.abc.Mapping[str, Side],
    theirs: collections.abc.Mapping[str, Side],
) -> list[Decision]:
    """One Decision per field of `ours`, sorted by field; a field without a policy always overwrites."""
    decisions: list[Decision] = []
    for name in sorted(ours):
        policy = policies.get(name)
        if policy is None:
            policy = FieldPolicy(field=name, policy=DEFAULT_POLICY)
        elif policy.field != name:
            policy = replace(policy, field=name)
        decisions.append(decide(policy, ours[name], theirs.get(name)))
    return decisions


# ---------------------------------------------------------------- parsing


def _fail(detail: str, field: str, code: str) -> NoReturn:
    raise InvalidInput(detail, code=code, field=field)


def _parse_priority(data: Any, field: str) -> tuple[str, ...]:
    if not isinstance(data, list) or not data:
        _fail(
            'Must be a non-empty list of sources, e.g. ["crm", "partnerloop"].',
            field,
            "invalid_priority",
        )
    if len(data) > MAX_SOURCES:
        _fail(f"At most {MAX_SOURCES} sources.", field, "invalid_priority")
    seen: dict[str, int] = {}
    for k, source in enumerate(data):
        path = f"{field}[{k}]"
        if not isinstance(source, str) or not source.strip():
            _fail("A source must be non-empty text.", path, "invalid_priority")
        if source != source.strip():
            _fail("A source must not start or end with spaces.", path, "invalid_priority")
        if len(source) > MAX_SOURCE_NAME:
            _fail(
                f"A source must be at most {MAX_SOURCE_NAME} characters.", path, "invalid_priority"
            )
        key = source.casefold()  # sources are matched ignoring case
        if key in seen:
            _fail(f"{source!r} is already listed at [{seen[key]}].", path, "duplicate_source")
        seen[key] = k
    return tuple(data)


def _parse_entry(name: str, data: Any, field: str) -> FieldPolicy:
    if not isinstance(data, dict):
        _fail(
            'Must be a JSON object such as {"policy": "never_overwrite"}.',
            field,
            "invalid_conflict_policy",
        )
    for key in data:
        if key not in ("policy", "priority"):
            _fail(
                f"Unknown key {key!r}; allowed here: policy, priority.",
                f"{field}.{key}",
                "unknown_key",
            )
    if "policy" not in data:
        _fail(
            f"'policy' is required; use one of: {', '.join(POLICIES)}.",
            f"{field}.policy",
            "missing_policy",
        )
    policy = data["policy"]
    if not isinstance(policy, str) or policy not in POLICIES:
        _fail(
            f"{policy!r} is not a conflict policy; use one of: {', '.join(POLICIES)}.",
            f"{field}.policy",
            "unknown_policy",
        )
    if policy != SOURCE_PRIORITY:
        if "priority" in data:
            _fail(
                f"Only source_priority takes a priority; remove it for {policy}.",
                f"{field}.priority",
                "priority_not_allowed",
            )
        return FieldPolicy(field=name, policy=policy)
    if "priority" not in data:
        _fail(
            'source_priority needs a priority, e.g. ["crm", "partnerloop"].',
            f"{field}.priority",
            "missing_priority",
        )
    return FieldPolicy(
        field=name, policy=policy, priority=_parse_priority(data["priority"], f"{field}.priority")
    )


def parse_policies(data: Any, *, field: str = "conflicts") -> dict[str, FieldPolicy]:
    """Validate submitted JSON; raises InvalidInput naming the path at fault."""
    if not isinstance(data, dict):
        _fail("Must be a JSON object keyed by CRM field name.", field, "invalid_conflict_policy")
    if len(data) > MAX_FIELDS:
        _fail(f"At most {MAX_FIELDS} fields.", field, "too_many_fields")
    policies: dict[str, FieldPolicy] = {}
    seen: dict[str, str] = {}
    for name, entry in data.items():
        path = f"{field}.{name}"
        if not isinstance(name, str) or not name.strip():
            _fail("The CRM field name must be non-empty text.", path, "invalid_field_name")
        if name != name.strip():
            _fail(
                "The CRM field name must not start or end with spaces.", path, "invalid_field_name"
            )
        if len(name) > MAX_FIELD_NAME:
            _fail(
                f"The CRM field name must be at most {MAX_FIELD_NAME} characters.",
                path,
                "invalid_field_name",
            )
        # Case-insensitive: Salesforce API names are, and two policies for one field is a bug.
        key = name.casefold()
        if key in seen:
            _fail(f"{name!r} is the same field as {seen[key]!r}.", path, "duplicate_field")
        seen[key] = name
        policies[name] = _parse_entry(name, entry, path)
    return policies


def policies_to_json(policies: collections.abc.Mapping[str, FieldPolicy]) -> dict[str, Any]:
    """The JSON parse_policies reads, keyed as given."""
    out: dict[str, Any] = {}
    for name, policy in policies.items():
        entry: dict[str, Any] = {"policy": policy.policy}
        if policy.priority:
            entry["priority"] = list(policy.priority)
        out[name] = entry
    return out
