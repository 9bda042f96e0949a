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

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import httpx

from partnerloop.integrations.writeback import PREFIX
from partnerloop.sync.worker import Outcome

VENDOR = "Magento"
ATTRIBUTE_PREFIX = f"{PREFIX}_"
MAX_MESSAGE_CHARS = 300
MAX_RESPONSE_CHARS = 1000
PERMANENT_STATUSES = (400, 403, 404, 409, 422)
CUSTOMER_ID = re.compile(r"[0-9]{1,20}")
PLACEHOLDER = re.compile(r"%([A-Za-z0-9_]+)")
UP_TO_DATE = "already up to date"


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
    got = _request(client, "GET", url, headers=headers)
    if isinstance(got, Outcome):
        return got
    customer = _json(got)
    if "id" not in customer:
        return Outcome(
            ok=False,
            error=f"{VENDOR} answered {got.status_code} without the customer",
            status_code=got.status_code,
            response=_excerpt(got),
        )
    wanted = {f"{ATTRIBUTE_PREFIX}{name}": value or "" for name, value in values.items()}
    if all(attribute_value(customer, code) == value for code, value in wanted.items()):
        return Outcome(ok=True, status_code=got.status_code, response=UP_TO_DATE)
    put = _request(
        client, "PUT", url, headers=headers, json={"customer": updated(customer, wanted)}
    )
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
    saved = _json(response)
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
            response=_excerpt(response),
        )
    return Outcome(ok=True, status_code=response.status_code, response=_excerpt(response))


# --- talking to Magento ------------------------------------------------------------------


def _request(
    client: httpx.Client, method: str, url: str, **kwargs: Any
) -> httpx.Response | Outcome:
    """The answer when it is 2xx, else what it means as an Outcome."""
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        return Outcome(ok=False, error=f"{VENDOR} did not answer in time")
    except httpx.HTTPError as error:
        return Outcome(ok=False, error=f"could not reach {VENDOR}: {error}")
    if response.is_success:
        return response
    return judge(response)


def judge(response: httpx.Response) -> Outcome:
    """A failed answer as an Outcome (see the module docstring)."""
    status = response.status_code
    excerpt = _excerpt(response)
    message = error_message(response)
    if status == 404:
        return Outcome(
            ok=False,
            error=f"the customer no longer exists in {VENDOR} (deleted there): {message}",
            permanent=True,
            status_code=status,
            response=excerpt,
        )
    if status == 429:
        return Outcome(
            ok=False,
            error=f"{VENDOR} rate limit: {message}",
            retry_after=_retry_after(response) or 1.0,
            status_code=status,
            response=excerpt,
        )
    hint = " (check the integration's access token and its Magento_Customer::manage resource)"
    return Outcome(
        ok=False,
        error=f"{VENDOR} answered {status}: {message}" + (hint if status in (401, 403) else ""),
        permanent=status in PERMANENT_STATUSES,
        retry_after=_retry_after(response),
        status_code=status,
        response=excerpt,
    )


def error_message(response: httpx.Response) -> str:
    """Magento's message with its placeholders filled from `parameters`."""
    data = _json(response)
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


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = json.loads(response.content) if response.content else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _excerpt(response: httpx.Response) -> str | None:
    return response.text[:MAX_RESPONSE_CHARS] if response.content else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return max(seconds, 0.0) if seconds is not None and math.isfinite(seconds) else None
