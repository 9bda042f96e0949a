"""CRM field mappings: which partnerloop facts land in which CRM field.

Pure: no database, no HTTP. Each CRM connector stores one mapping; the API
validates it with `parse_mapping` before saving, and the sync applies it to
one customer's facts with `apply_mapping`.

The JSON format::

    {"version": 1,
     "fields": [
       {"target": "email", "source": "email", "transforms": [{"type": "trim"}]},
       {"target": "partnerloop_lifetime_value", "source": "lifetime_value",
        "transforms": [{"type": "money", "format": "decimal"}]},
       {"target": "full_name",
        "transforms": [{"type": "concat", "sources": ["first_name", "last_name"]}]}
     ]}

- `version`: the mapping's revision, a positive whole number. The defaults
  are MAPPING_VERSION (1); whoever saves an edit raises it (the API refuses a
  version that is not newer than the saved one, so two editors cannot
  silently overwrite each other).
- `fields`: 1 to 200 rules. `target` is the CRM field name (1 to 100
  characters, no surrounding spaces, unique ignoring case because Salesforce
  API names are case-insensitive). `source` is one of SOURCE_FIELDS; it is
  left out exactly when the first transform is `concat` or `constant`, which
  make their own value. `transforms` (optional, at most 20) run in order.
- Transforms; every one except default, constant and concat passes None through:
  - `{"type": "lowercase"}`, `{"type": "trim"}`: text only.
  - `{"type": "concat", "sources": [...], "separator": " "}`: joins text or
    number facts, each trimmed; missing and empty parts are skipped, and
    nothing left gives None. Separator defaults to one space.
  - `{"type": "value_map", "map": {"from": "to"}, "default": ...}`: keys are
    compared as text (order_count 1 -> "1", true -> "true"); an unmapped
    value becomes `default` if one is given (null drops it), else passes
    through unchanged.
  - `{"type": "default", "value": ...}`: replaces None and "".
  - `{"type": "constant", "value": ...}`: always this value.
  - `{"type": "date", "format": "iso" | "date" | "epoch_ms" | "epoch_ms_midnight"}`:
    on a date fact, in UTC: "2026-11-24T09:30:00Z" (whole seconds),
    "2026-11-24", milliseconds since 1970, or the milliseconds of that UTC
    day's midnight (what HubSpot date properties require).
  - `{"type": "money", "format": "decimal" | "minor" | "decimal_with_currency"}`:
    on an amount fact: "12.34" (exact text, never a float), 1234, "12.34 EUR".
  - `{"type": "boolean", "true": "yes", "false": "no"}`: on a yes/no fact;
    labels default to JSON true/false, and a null label drops the field.
  Values written in a mapping are text, whole numbers, booleans (or null where
  said); never fractions, so no float ever reaches money. A transform whose input
  type is wrong (money on text, date on a number) is refused at validation, and
  so is a date or amount fact that reaches the CRM without a date or money
  transform to say how to write it.

A field whose value ends up None is left out of the CRM update, so a missing
fact never blanks a field the merchant filled by hand.
"""

from __future__ import annotations

import collections.abc
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from types import MappingProxyType
from typing import Any, Final, NoReturn, TypeAlias

from partnerloop.core.errors import InvalidInput
from partnerloop.core.money import format_amount

MAPPING_VERSION: Final = 1
MAX_FIELDS: Final = 200
MAX_TARGET: Final = 100
MAX_TRANSFORMS: Final = 20
MAX_MAP_ENTRIES: Final = 500
MAX_CONCAT_SOURCES: Final = 20
MAX_TEXT: Final = 1000  # any text written in a mapping: keeps a stored mapping small

Scalar: TypeAlias = str | int | bool

# The static types a value can have while a rule runs (None is always possible).
TEXT, NUMBER, BOOLEAN, DATE, MONEY = "text", "number", "boolean", "date", "money"
_ANY_SCALAR = frozenset({TEXT, NUMBER, BOOLEAN})

_SOURCES: dict[str, tuple[str, str]] = {
    "email": (TEXT, "The customer's email address."),
    "first_name": (TEXT, "The customer's first name."),
    "last_name": (TEXT, "The customer's last name."),
    "name": (TEXT, "The customer's full name as the shop has it."),
    "customer_id": (TEXT, "partnerloop's id of the customer."),
    "shop_customer_id": (TEXT, "The shop's id of the customer."),
    "affiliate_id": (TEXT, "partnerloop's id of the attributed affiliate, if any."),
    "affiliate_name": (TEXT, "The attributed affiliate's name, if any."),
    "referred_by_affiliate": (BOOLEAN, "Whether an affiliate referred the customer."),
    "first_order_at": (DATE, "When the customer's first order was placed."),
    "last_order_at": (DATE, "When the customer's latest order was placed."),
    "last_order_id": (TEXT, "The shop's id of the customer's latest order."),
    "order_count": (NUMBER, "How many orders the customer placed."),
    "lifetime_value": (MONEY, "The total of the customer's orders."),
    "last_order_value": (MONEY, "The total of the customer's latest order."),
    "coupon": (TEXT, "The coupon code used on the attributed order, if any."),
    "click_source": (TEXT, "The referrer host of the attributing click, if any."),
    **{
        f"sub{n}": (TEXT, f"The sub{n} tracking value of the attributing click.")
        for n in range(1, 6)
    },
    "program_id": (TEXT, "partnerloop's id of the affiliate program."),
    "program_name": (TEXT, "The affiliate program's name."),
}
# Name -> one-line description, for the docs and for validation.
SOURCE_FIELDS: Final[collections.abc.Mapping[str, str]] = MappingProxyType(
    {name: description for name, (_, description) in _SOURCES.items()}
)
# Name -> static type: text, number, boolean, date (aware datetime) or money
# ({"amount_minor": int, "currency": "EUR"}).
SOURCE_TYPES: Final[collections.abc.Mapping[str, str]] = MappingProxyType(
    {name: kind for name, (kind, _) in _SOURCES.items()}
)

DATE_FORMATS: Final = ("iso", "date", "epoch_ms", "epoch_ms_midnight")
MONEY_FORMATS: Final = ("decimal", "minor", "decimal_with_currency")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Lowercase:
    pass


@dataclass(frozen=True, slots=True)
class Trim:
    pass


@dataclass(frozen=True, slots=True)
class Concat:
    sources: tuple[str, ...]
    separator: str = " "


@dataclass(frozen=True, slots=True)
class ValueMap:
    map: tuple[tuple[str, Scalar | None], ...]  # pairs, in the order written
    default: Scalar | None = None
    has_default: bool = False  # "default": null (drop) differs from no default (keep)


@dataclass(frozen=True, slots=True)
class Default:
    value: Scalar


@dataclass(frozen=True, slots=True)
class Constant:
    value: Scalar


@dataclass(frozen=True, slots=True)
class DateFormat:
    format: str  # one of DATE_FORMATS


@dataclass(frozen=True, slots=True)
class MoneyFormat:
    format: str  # one of MONEY_FORMATS


@dataclass(frozen=True, slots=True)
class BooleanLabels:
    true: Scalar | None = True
    false: Scalar | None = False


Transform: TypeAlias = (
    Lowercase
    | Trim
    | Concat
    | ValueMap
    | Default
    | Constant
    | DateFormat
    | MoneyFormat
    | BooleanLabels
)


@dataclass(frozen=True)
class FieldRule:
    target: str
    source: str | None
    transforms: tuple[Transform, ...] = ()


@dataclass(frozen=True)
class Mapping:
    version: int
    fields: tuple[FieldRule, ...]


# ---------------------------------------------------------------- parsing


def _fail(detail: str, field: str, code: str = "invalid_mapping") -> NoReturn:
    raise InvalidInput(detail, code=code, field=field)


def _object(data: Any, field: str, *, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        _fail("Must be a JSON object.", field)
    for key in data:
        if key not in required and key not in optional:
            allowed = ", ".join(sorted(required | optional))
            _fail(f"Unknown key {key!r}; allowed here: {allowed}.", f"{field}.{key}")
    for key in sorted(required):
        if key not in data:
            _fail(f"{key!r} is required.", f"{field}.{key}")
    return data


def _text(data: Any, field: str, *, allow_empty: bool = True) -> str:
    if not isinstance(data, str):
        _fail("Must be text.", field)
    if not allow_empty and not data:
        _fail("Must not be empty.", field)
    if len(data) > MAX_TEXT:
        _fail(f"Must be at most {MAX_TEXT} characters.", field)
    return data


def _scalar(data: Any, field: str, *, nullable: bool) -> Scalar | None:
    if data is None and nullable:
        return None
    if isinstance(data, str):
        return _text(data, field)
    if isinstance(data, bool | int):
        return data
    if isinstance(data, float):
        _fail('Fractions are not accepted here; write the number as text, e.g. "12.5".', field)
    allowed = "text, a whole number, true/false" + (" or null" if nullable else "")
    _fail(f"Must be {allowed}.", field)


def _source(data: Any, field: str) -> str:
    if not isinstance(data, str) or data not in SOURCE_FIELDS:
        _fail(
            f"{data!r} is not a partnerloop fact; use one of: {', '.join(SOURCE_FIELDS)}.",
            field,
            "unknown_source_field",
        )
    return data


def _choice(data: Any, field: str, choices: tuple[str, ...]) -> str:
    if not isinstance(data, str) or data not in choices:
        _fail(f"Must be one of: {', '.join(choices)}.", field)
    return data


def _types(value: Scalar | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, bool):
        return frozenset({BOOLEAN})
    return frozenset({NUMBER if isinstance(value, int) else TEXT})


def _describe(types: frozenset[str]) -> str:
    return " or ".join(sorted(types)) or "nothing"


def _expect(types: frozenset[str], accepted: frozenset[str], name: str, field: str) -> None:
    if not types <= accepted:
        _fail(
            f"The {name} transform takes {_describe(accepted)}, "
            f"but its input here is {_describe(types)}.",
            f"{field}.type",
            "incompatible_transform",
        )


def _parse_transform(data: Any, field: str) -> Transform:
    if not isinstance(data, dict):
        _fail("Must be a JSON object.", field)
    kind = data.get("type")
    if kind not in _TRANSFORM_KEYS:
        _fail(
            f"{kind!r} is not a transform; use one of: {', '.join(_TRANSFORM_KEYS)}.",
            f"{field}.type",
            "unknown_transform",
        )
    required, optional = _TRANSFORM_KEYS[kind]
    data = _object(data, field, required=required | {"type"}, optional=optional)
    if kind == "lowercase":
        return Lowercase()
    if kind == "trim":
        return Trim()
    if kind == "concat":
        sources = data["sources"]
        if not isinstance(sources, list) or not sources:
            _fail("Must be a non-empty list of fact names.", f"{field}.sources")
        if len(sources) > MAX_CONCAT_SOURCES:
            _fail(f"At most {MAX_CONCAT_SOURCES} parts.", f"{field}.sources")
        names = tuple(_source(s, f"{field}.sources[{k}]") for k, s in enumerate(sources))
        for k, name in enumerate(names):
            if SOURCE_TYPES[name] not in (TEXT, NUMBER):
                _fail(
                    f"concat joins text and numbers; {name} is {SOURCE_TYPES[name]}.",
                    f"{field}.sources[{k}]",
                    "incompatible_transform",
                )
        separator = _text(data.get("separator", " "), f"{field}.separator")
        return Concat(sources=names, separator=separator)
    if kind == "value_map":
        table = data["map"]
        if not isinstance(table, dict) or not table:
            _fail('Must be a non-empty JSON object such as {"from": "to"}.', f"{field}.map")
        if len(table) > MAX_MAP_ENTRIES:
            _fail(f"At most {MAX_MAP_ENTRIES} entries.", f"{field}.map")
        pairs = tuple(
            (_text(key, f"{field}.map"), _scalar(value, f"{field}.map.{key}", nullable=True))
            for key, value in table.items()
        )
        if "default" not in data:
            return ValueMap(map=pairs)
        default = _scalar(data["default"], f"{field}.default", nullable=True)
        return ValueMap(map=pairs, default=default, has_default=True)
    if kind == "default":
        value = _scalar(data["value"], f"{field}.value", nullable=False)
        assert value is not None  # nullable=False
        return Default(value=value)
    if kind == "constant":
        value = _scalar(data["value"], f"{field}.value", nullable=False)
        assert value is not None
        return Constant(value=value)
    if kind == "date":
        return DateFormat(format=_choice(data["format"], f"{field}.format", DATE_FORMATS))
    if kind == "money":
        return MoneyFormat(format=_choice(data["format"], f"{field}.format", MONEY_FORMATS))
    return BooleanLabels(
        true=_scalar(data.get("true", True), f"{field}.true", nullable=True),
        false=_scalar(data.get("false", False), f"{field}.false", nullable=True),
    )


_TRANSFORM_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "lowercase": (set(), set()),
    "trim": (set(), set()),
    "concat": ({"sources"}, {"separator"}),
    "value_map": ({"map"}, {"default"}),
    "default": ({"value"}, set()),
    "constant": ({"value"}, set()),
    "date": ({"format"}, set()),
    "money": ({"format"}, set()),
    "boolean": (set(), {"true", "false"}),
}
_SOURCE_TYPE_SETS = {name: frozenset({kind}) for name, kind in SOURCE_TYPES.items()}


def _output_types(transform: Transform, types: frozenset[str], field: str) -> frozenset[str]:
    """What a transform makes of input of these types; refuses input it cannot take."""
    match transform:
        case Lowercase() | Trim():
            _expect(types, frozenset({TEXT}), type(transform).__name__.lower(), field)
            return frozenset({TEXT})
        case Concat():
            return frozenset({TEXT})
        case ValueMap(map=pairs, default=default, has_default=has_default):
            _expect(types, _ANY_SCALAR, "value_map", field)
            kept = _types(default) if has_default else types
            return kept.union(*(_types(value) for _, value in pairs))
        case Default(value=value):
            return types | _types(value)
        case Constant(value=value):
            return _types(value)
        case DateFormat(format=fmt):
            _expect(types, frozenset({DATE}), "date", field)
            return frozenset({NUMBER if fmt.startswith("epoch") else TEXT})
        case MoneyFormat(format=fmt):
            _expect(types, frozenset({MONEY}), "money", field)
            return frozenset({NUMBER if fmt == "minor" else TEXT})
        case BooleanLabels(true=true, false=false):
            _expect(types, frozenset({BOOLEAN}), "boolean", field)
            return _types(true) | _types(false)


def _parse_rule(data: Any, field: str) -> FieldRule:
    data = _object(data, field, required={"target"}, optional={"source", "transforms"})
    target = data["target"]
    if not isinstance(target, str) or not target.strip():
        _fail("The CRM field name must be non-empty text.", f"{field}.target")
    if target != target.strip():
        _fail("The CRM field name must not start or end with spaces.", f"{field}.target")
    if len(target) > MAX_TARGET:
        _fail(f"The CRM field name must be at most {MAX_TARGET} characters.", f"{field}.target")
    raw = data.get("transforms", [])
    if not isinstance(raw, list):
        _fail("Must be a list of transforms.", f"{field}.transforms")
    if len(raw) > MAX_TRANSFORMS:
        _fail(f"At most {MAX_TRANSFORMS} transforms per field.", f"{field}.transforms")
    makes_own_value = bool(raw) and isinstance(raw[0], dict) and raw[0].get("type") in _GENERATORS
    source: str | None = None
    if "source" in data:
        source = _source(data["source"], f"{field}.source")
        if makes_own_value:
            _fail(
                f"The source is unused: the first transform, {raw[0]['type']}, makes its own "
                "value. Remove the source.",
                f"{field}.source",
            )
    elif not makes_own_value:
        _fail(
            "A source fact is required unless the first transform is concat or constant.",
            f"{field}.source",
        )
    types = _SOURCE_TYPE_SETS[source] if source else frozenset()
    transforms: list[Transform] = []
    for j, item in enumerate(raw):
        path = f"{field}.transforms[{j}]"
        transform = _parse_transform(item, path)
        if j > 0 and isinstance(transform, Concat | Constant):
            _fail(
                "concat and constant replace the value, so only the first transform may be one.",
                f"{path}.type",
            )
        types = _output_types(transform, types, path)
        transforms.append(transform)
    if left := types & {DATE, MONEY}:
        fix = "a date" if DATE in left else "a money"
        _fail(
            f"This field would send a raw {_describe(left)}; add {fix} transform to choose "
            "how the CRM gets it.",
            f"{field}.transforms",
            "transform_required",
        )
    return FieldRule(target=target, source=source, transforms=tuple(transforms))


_GENERATORS = ("concat", "constant")


def parse_mapping(data: Any, *, field: str = "mapping") -> Mapping:
    """Validate submitted JSON; raises InvalidInput naming the path at fault."""
    data = _object(data, field, required={"version", "fields"}, optional=set())
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        _fail("The version must be a positive whole number.", f"{field}.version")
    raw = data["fields"]
    if not isinstance(raw, list):
        _fail("Must be a list of field rules.", f"{field}.fields")
    if not raw:
        _fail("A mapping needs at least one field.", f"{field}.fields")
    if len(raw) > MAX_FIELDS:
        _fail(f"At most {MAX_FIELDS} fields.", f"{field}.fields")
    rules: list[FieldRule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        rule = _parse_rule(item, f"{field}.fields[{i}]")
        # Case-insensitive: Salesforce API names are, and two rules writing one field is a bug.
        key = rule.target.casefold()
        if key in seen:
            _fail(
                f"{rule.target!r} is already the target of fields[{seen[key]}].",
                f"{field}.fields[{i}].target",
                "duplicate_target",
            )
        seen[key] = i
        rules.append(rule)
    return Mapping(version=version, fields=tuple(rules))


def _transform_json(transform: Transform) -> dict[str, Any]:
    match transform:
        case Lowercase():
            return {"type": "lowercase"}
        case Trim():
            return {"type": "trim"}
        case Concat(sources=sources, separator=separator):
            return {"type": "concat", "sources": list(sources), "separator": separator}
        case ValueMap(map=pairs, default=default, has_default=has_default):
            out: dict[str, Any] = {"type": "value_map", "map": dict(pairs)}
            if has_default:
                out["default"] = default
            return out
        case Default(value=value):
            return {"type": "default", "value": value}
        case Constant(value=value):
            return {"type": "constant", "value": value}
        case DateFormat(format=fmt):
            return {"type": "date", "format": fmt}
        case MoneyFormat(format=fmt):
            return {"type": "money", "format": fmt}
        case BooleanLabels(true=true, false=false):
            return {"type": "boolean", "true": true, "false": false}


def mapping_to_json(mapping: Mapping) -> dict[str, Any]:
    fields: list[dict[str, Any]] = []
    for rule in mapping.fields:
        item: dict[str, Any] = {"target": rule.target}
        if rule.source is not None:
            item["source"] = rule.source
        item["transforms"] = [_transform_json(t) for t in rule.transforms]
        fields.append(item)
    return {"version": mapping.version, "fields": fields}


# ---------------------------------------------------------------- applying


def _as_text(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"the {name} transform takes text, not {value!r}")


def _key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as JSON writes it, which is what merchants type
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"the value_map transform takes text, numbers or booleans, not {value!r}")


def _part(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"the concat transform takes text or numbers, not {value!r}")


def _date(value: Any, fmt: str) -> str | int | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise TypeError(f"the date transform takes an aware datetime, not {value!r}")
    utc = value.astimezone(UTC)
    if fmt == "iso":
        return utc.replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    if fmt == "date":
        return utc.date().isoformat()
    if fmt == "epoch_ms":
        return (utc - _EPOCH) // _MS
    midnight = datetime.combine(utc.date(), time(), tzinfo=UTC)
    return (midnight - _EPOCH) // _MS


def _money(value: Any, fmt: str) -> str | int | None:
    if value is None:
        return None
    amount = value.get("amount_minor") if isinstance(value, dict) else None
    currency = value.get("currency") if isinstance(value, dict) else None
    if isinstance(amount, bool) or not isinstance(amount, int) or not isinstance(currency, str):
        raise TypeError(f'the money transform takes {{"amount_minor", "currency"}}, not {value!r}')
    if fmt == "minor":
        return amount
    decimal = format_amount(amount, currency)
    return decimal if fmt == "decimal" else f"{decimal} {currency}"


def _apply(transform: Transform, value: Any, facts: collections.abc.Mapping[str, Any]) -> Any:
    match transform:
        case Lowercase():
            text = _as_text(value, "lowercase")
            return None if text is None else text.lower()
        case Trim():
            text = _as_text(value, "trim")
            return None if text is None else text.strip()
        case Concat(sources=sources, separator=separator):
            parts = [part for part in (_part(facts.get(s)) for s in sources) if part]
            return separator.join(parts) if parts else None
        case ValueMap(map=pairs, default=default, has_default=has_default):
            if value is None:
                return None
            key = _key(value)
            for source, target in pairs:
                if source == key:
                    return target
            return default if has_default else value
        case Default(value=fallback):
            return fallback if value is None or value == "" else value
        case Constant(value=constant):
            return constant
        case DateFormat(format=fmt):
            return _date(value, fmt)
        case MoneyFormat(format=fmt):
            return _money(value, fmt)
        case BooleanLabels(true=true, false=false):
            if value is None:
                return None
            if not isinstance(value, bool):
                raise TypeError(f"the boolean transform takes true or false, not {value!r}")
            return true if value else false


def apply_mapping(mapping: Mapping, facts: collections.abc.Mapping[str, Any]) -> dict[str, Any]:
    """CRM field -> value for one customer; a missing fact counts as None.

    A fact of the wrong type is the caller's bug: TypeError (or MoneyError for an
    unknown currency), with a note naming the CRM field.
    """
    out: dict[str, Any] = {}
    for rule in mapping.fields:
        value = facts.get(rule.source) if rule.source is not None else None
        try:
            for transform in rule.transforms:
                value = _apply(transform, value, facts)
        except (TypeError, ValueError) as error:
            error.add_note(f"while mapping CRM field {rule.target!r}")
            raise
        if value is not None:
            out[rule.target] = value
    return out


# ---------------------------------------------------------------- defaults


def _rule(target: str, source: str | None, *transforms: Transform) -> FieldRule:
    return FieldRule(target=target, source=source, transforms=transforms)


_TRIM = Trim()
_DEFAULTS: dict[str, Mapping] = {
    # HubSpot contact properties. `email`, `firstname`, `lastname` are HubSpot's
    # own; HubSpot's source properties (hs_analytics_source, ...) are computed by
    # HubSpot, so the lead source goes to a custom property like the rest.
    "hubspot": Mapping(
        version=MAPPING_VERSION,
        fields=(
            _rule("email", "email", _TRIM, Lowercase()),
            _rule("firstname", "first_name", _TRIM),
            _rule("lastname", "last_name", _TRIM),
            _rule(
                "partnerloop_lead_source",
                "referred_by_affiliate",
                BooleanLabels(true="Affiliate", false=None),
            ),
            _rule("partnerloop_affiliate_id", "affiliate_id"),
            _rule("partnerloop_affiliate", "affiliate_name"),
            # HubSpot date properties take the UTC midnight of the day, in ms.
            _rule(
                "partnerloop_first_order_date", "first_order_at", DateFormat("epoch_ms_midnight")
            ),
            _rule("partnerloop_order_count", "order_count"),
            _rule("partnerloop_lifetime_value", "lifetime_value", MoneyFormat("decimal")),
            _rule("partnerloop_last_order_id", "last_order_id"),
            _rule("partnerloop_coupon", "coupon"),
            _rule("partnerloop_click_source", "click_source"),
            _rule("partnerloop_sub1", "sub1"),
        ),
    ),
    # Salesforce Contact. LeadSource is a standard picklist whose shipped values
    # include "Partner Referral"; a per-affiliate text such as "Affiliate: Ada"
    # would be refused by a restricted picklist, so the affiliate's name goes to
    # its own custom field. A customer no affiliate referred leaves LeadSource
    # alone (null label). LastName is required on Contact, hence its default.
    "salesforce": Mapping(
        version=MAPPING_VERSION,
        fields=(
            # Our customer id is the upsert key (an External ID field the merchant adds).
            _rule("Partnerloop_Customer_Id__c", "customer_id"),
            _rule("Email", "email", _TRIM, Lowercase()),
            _rule("FirstName", "first_name", _TRIM),
            _rule("LastName", "last_name", _TRIM, Default("[not provided]")),
            _rule(
                "LeadSource",
                "referred_by_affiliate",
                BooleanLabels(true="Partner Referral", false=None),
            ),
            _rule("Partnerloop_Affiliate_Id__c", "affiliate_id"),
            _rule("Partnerloop_Affiliate__c", "affiliate_name"),
            _rule("Partnerloop_First_Order_Date__c", "first_order_at", DateFormat("date")),
            _rule("Partnerloop_Order_Count__c", "order_count"),
            _rule("Partnerloop_Lifetime_Value__c", "lifetime_value", MoneyFormat("decimal")),
            _rule("Partnerloop_Last_Order_Id__c", "last_order_id"),
            _rule("Partnerloop_Coupon__c", "coupon"),
            _rule("Partnerloop_Click_Source__c", "click_source"),
            _rule("Partnerloop_Sub1__c", "sub1"),
        ),
    ),
    # Pipedrive person: `email` and `name` are Pipedrive's own. Custom fields are
    # addressed by a 40-character key Pipedrive generates per account, which
    # partnerloop cannot know: the partnerloop_* targets below are placeholders
    # the merchant replaces with their field keys through the API.
    "pipedrive": Mapping(
        version=MAPPING_VERSION,
        fields=(
            _rule("email", "email", _TRIM, Lowercase()),
            _rule("name", "name", _TRIM),
            _rule(
                "partnerloop_lead_source",
                "referred_by_affiliate",
                BooleanLabels(true="Affiliate", false=None),
            ),
            _rule("partnerloop_affiliate_id", "affiliate_id"),
            _rule("partnerloop_affiliate", "affiliate_name"),
            _rule("partnerloop_first_order_date", "first_order_at", DateFormat("date")),
            _rule("partnerloop_order_count", "order_count"),
            _rule("partnerloop_lifetime_value", "lifetime_value", MoneyFormat("decimal")),
            _rule("partnerloop_last_order_id", "last_order_id"),
            _rule("partnerloop_coupon", "coupon"),
            _rule("partnerloop_click_source", "click_source"),
            _rule("partnerloop_sub1", "sub1"),
        ),
    ),
}
CRM_KINDS: Final = tuple(_DEFAULTS)


def default_mapping(kind: str) -> Mapping:
    """The mapping a new connector of this CRM starts with."""
    if kind not in _DEFAULTS:
        _fail(f"{kind!r} is not a CRM; use one of: {', '.join(CRM_KINDS)}.", "kind", "unknown_crm")
    return _DEFAULTS[kind]
