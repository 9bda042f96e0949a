"""Magento 2 write-back: a customer's CRM values as customer attributes `crm_<property>`.

Before the first write-back the merchant must create a customer attribute for
each written property in Magento, with the code `crm_<property>` (e.g.
`crm_lifecycle_stage`), as a text (varchar) or text area attribute: Magento
keeps custom attributes only when an attribute with that code exists, and
silently drops any other. Adobe Commerce has Stores > Attributes > Customer;
Magento Open Source needs a small module or data patch. Multi-select attributes
do not fit: they store option ids, and a multi-valued CRM value comes as one
text ("vip;newsletter"). After a PUT the answer is checked: a value Magento did
not keep is reported (permanently) as a missing attribute.

`PUT /rest/V1/customers/{id}` saves the whole customer it is given, so a write
reads the customer first (GET), sets or replaces only the `crm_*` entries in
`custom_attributes` (a cleared value is an empty string), keeps every other
field and attribute as read, and PUTs `{"customer": ...}`, or does nothing when
the values are already there (Magento leaves out empty attributes: absent
counts as empty). Magento has no conditional update: a change to the customer
between our GET and PUT (milliseconds apart) is overwritten with what we read.

Errors are `{"message": "...", "parameters": [...] or {...}}`, the message
with %1 / %name placeholders, filled here for the error text. 404 = the
customer was deleted in the shop (permanent); 401 = the integration token is
wrong or lacks Magento_Customer::manage (retried: the merchant fixes it);
400/403/409/422 permanent; 429, 5xx, timeouts and connection errors retried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from partnerloop.integrations.writeback import (
    CUSTOMER_ID,
    MAX_MESSAGE_CHARS,
    PREFIX,
    UP_TO_DATE,
    excerpt,
    json_object,
    judge_failure,
    send,
)
from partnerloop.sync.worker import Outcome

VENDOR = "Magento"
ATTRIBUTE_PREFIX = f"{PREFIX}_"
PLACEHOLDER = re.compile(r"%([A-Za-z0-9_]+)")
AUTH_HINT = "check the integration's access token and its Magento_Customer::manage resource"


def write_attributes(
    client: httpx.Client,
    *,
    api: str,
    headers: Mapping[str, str],
    customer_id: str,
    values: Mapping[str, str | None],
) -> Outcome:
    """Set the customer's `crm_<property>` attributes to `values`; `api` is
    https://{shop}/rest/V1."""
    if not CUSTOMER_ID.fullmatch(customer_id):
        return Outcome(
            ok=False, error=f"{customer_id!r} is not a Magento customer id", permanent=True
        )
    url = f"{api}/customers/{customer_id}"
    got = send(client, "GET", url, vendor=VENDOR, judge=judge, headers=headers)
    if isinstance(got, Outcome):
        return got
    customer = json_object(got)
    if "id" not in customer:
        return Outcome(
            ok=False,
            error=f"{VENDOR} answered {got.status_code} without the customer",
            status_code=got.status_code,
            response=excerpt(got),
        )
    wanted = {f"{ATTRIBUTE_PREFIX}{name}": value or "" for name, value in values.items()}
    if all(attribute_value(customer, code) == value for code, value in wanted.items()):
        return Outcome(ok=True, status_code=got.status_code, response=UP_TO_DATE)
    body = {"customer": updated(customer, wanted)}
    put = send(client, "PUT", url, vendor=VENDOR, judge=judge, headers=headers, json=body)
    if isinstance(put, Outcome):
        return put
    return _kept(put, wanted)


def attribute_value(customer: Mapping[str, Any], code: str) -> str:
    """A custom attribute's value as text; absent (Magento omits empty ones) = ""."""
    for entry in _attributes(customer):
        if entry.get("attribute_code") == code:
            value = entry.get("value")
            return "" if value is None else str(value)
    return ""


def updated(customer: Mapping[str, Any], wanted: Mapping[str, str]) -> dict[str, Any]:
    """The customer as read, with `wanted` set in custom_attributes: existing
    entries replaced in place, new ones appended in code order."""
    entries = [dict(entry) for entry in _attributes(customer)]
    for entry in entries:
        code = entry.get("attribute_code")
        if isinstance(code, str) and code in wanted:
            entry["value"] = wanted[code]
    present = {entry.get("attribute_code") for entry in entries}
    entries += [
        {"attribute_code": code, "value": wanted[code]}
        for code in sorted(wanted)
        if code not in present
    ]
    return {**customer, "custom_attributes": entries}


def _attributes(customer: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = customer.get("custom_attributes")
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, Mapping)]


def _kept(response: httpx.Response, wanted: Mapping[str, str]) -> Outcome:
    """OK when the saved customer Magento answers with holds every non-empty value;
    a missing one means the merchant has not created that attribute."""
    saved = json_object(response)
    missing = sorted(
        code for code, value in wanted.items() if value and not attribute_value(saved, code)
    )
    if saved and missing:
        return Outcome(
            ok=False,
            error=f"{VENDOR} did not keep {', '.join(missing)}: create these customer "
            "attributes in Magento first (text attributes with exactly these codes)",
            permanent=True,
            status_code=response.status_code,
            response=excerpt(response),
        )
    return Outcome(ok=True, status_code=response.status_code, response=excerpt(response))


# --- talking to Magento ------------------------------------------------------------------


def judge(response: httpx.Response) -> Outcome:
    """A failed answer as an Outcome (see the module docstring)."""
    return judge_failure(
        response, vendor=VENDOR, message=error_message(response), auth_hint=AUTH_HINT
    )


def error_message(response: httpx.Response) -> str:
    """Magento's message with its placeholders filled from `parameters`."""
    data = json_object(response)
    message = data.get("message")
    if not isinstance(message, str) or not message:
        return response.reason_phrase or f"HTTP {response.status_code}"
    return filled(message, data.get("parameters"))[:MAX_MESSAGE_CHARS]


def filled(message: str, parameters: Any) -> str:
    """%1, %2 from a list (1-based, as Magento's Phrase renders them), %name from
    an object; a placeholder without a parameter stays as it is."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if isinstance(parameters, list) and name.isdigit():
            index = int(name) - 1
            if 0 <= index < len(parameters):
                return str(parameters[index])
        if isinstance(parameters, dict) and name in parameters:
            return str(parameters[name])
        return match.group(0)

    return PLACEHOLDER.sub(value, message)
