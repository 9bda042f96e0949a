"""Connectors as stored: one merchant's connection to one shop.

Secrets and API credentials are encrypted at rest and only decrypted where a
signature is checked or an API called. Rotating the webhook secret keeps the
previous one valid until the next rotation, because shops take a while to
start signing with a new one (Shopify: up to an hour).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from partnerloop.core.crypto import FieldCipher
from partnerloop.core.errors import InvalidInput, NotFound
from partnerloop.core.ids import new_id
from partnerloop.integrations.models import Connector
from partnerloop.integrations.shop import ConnectorConfig
from partnerloop.programs import service as programs
from partnerloop.programs.models import Program

SECRET_FIELD = "connector.secret"  # noqa: S105 (an encryption context name, not a secret)
CREDENTIALS_FIELD = "connector.credentials"
SOURCE_PREFIX = "connector:"
INBOUND_KIND = "shop"
MAX_SECRET = 512
# Every connector may be pointed at another API host (a local test server, a proxy),
# and be pulled on a schedule (partnerloop.integrations.scheduled).
COMMON_SETTINGS = {"api_base_url": False, "pull_every_minutes": False}
LONG_SETTINGS = {"public_key": 8192}  # a PEM public key of up to 4096-bit RSA and more


def source_of(connector_id: str) -> str:
    """The inbox `source` of a connector's events: dedupe is per connector."""
    return f"{SOURCE_PREFIX}{connector_id}"


def connector_id_of(source: str) -> str | None:
    return source.removeprefix(SOURCE_PREFIX) if source.startswith(SOURCE_PREFIX) else None


def webhook_url(public_url: str, connector_id: str) -> str:
    return f"{public_url.rstrip('/')}/hooks/{connector_id}"


def _check_url(value: str, field: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"{field} must be an http(s) URL, e.g. https://shop.example.com.",
            code="invalid_url",
            field=f"settings.{field}",
        )
    return value.rstrip("/")


class ConnectorKind(Protocol):
    """What every connector kind (shop in, CRM or webhook out) declares about its settings.
    Optional: `list_settings` (names whose value is a list of text, checked by
    `check_list`), `check_secret` (outgoing kinds: check or make the secret) and
    `check_credentials` (raise InvalidInput unless the credentials given go together)."""

    kind: str
    settings_fields: Mapping[str, bool]
    credential_fields: Sequence[str]


def _validated(shop: ConnectorKind, settings: Mapping[str, Any]) -> dict[str, Any]:
    cleaned = check_settings(shop, settings)
    validate = getattr(shop, "validate", None)  # checks a kind makes beyond the types
    if validate is not None:
        validate(cleaned)
    return cleaned


def _check_list(shop: ConnectorKind, name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(
            f"settings.{name} must be a list of names (or one comma-separated text).",
            code="invalid_setting",
            field=f"settings.{name}",
        )
    check = getattr(shop, "check_list", None)
    return list(check(name, value)) if check is not None else value


def check_settings(shop: ConnectorKind, settings: Mapping[str, Any]) -> dict[str, Any]:
    lists = tuple(getattr(shop, "list_settings", ()))
    known = {**COMMON_SETTINGS, **shop.settings_fields, **dict.fromkeys(lists, False)}
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise InvalidInput(
            f"Unknown setting {unknown[0]!r} for a {shop.kind} connector; "
            f"known: {', '.join(sorted(known))}.",
            code="unknown_setting",
            field=f"settings.{unknown[0]}",
        )
    cleaned: dict[str, Any] = {}
    for name, required in known.items():
        value = settings.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise InvalidInput(
                    f"A {shop.kind} connector needs settings.{name}.",
                    code="missing_setting",
                    field=f"settings.{name}",
                )
            continue
        if name == "pull_every_minutes":
            cleaned[name] = _check_minutes(value)
            continue
        if name in lists:
            cleaned[name] = _check_list(shop, name, value)
            continue
        if not isinstance(value, str) or len(value) > LONG_SETTINGS.get(name, 512):
            raise InvalidInput(
                f"settings.{name} must be text of at most "
                f"{LONG_SETTINGS.get(name, 512)} characters.",
                code="invalid_setting",
                field=f"settings.{name}",
            )
        value = value.strip()
        if name.endswith("_url"):
            value = _check_url(value, name)
        cleaned[name] = value
    return cleaned


def check_switch(settings: Mapping[str, Any], name: str) -> None:
    """A setting that turns something on: "on" or "off" (absent: off)."""
    value = settings.get(name)
    if value is not None and value not in ("on", "off"):
        raise InvalidInput(
            f'settings.{name} must be "on" or "off".',
            code="invalid_setting",
            field=f"settings.{name}",
        )


def _check_minutes(value: Any) -> int:
    low, high = 5, 1440  # every 5 minutes to once a day
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(
            f"settings.pull_every_minutes must be a whole number from {low} to {high}.",
            code="invalid_setting",
            field="settings.pull_every_minutes",
        )
    return value


def _secret_for(shop: ConnectorKind, secret: str | None) -> str:
    make_or_check = getattr(shop, "check_secret", None)
    if make_or_check is not None:
        return str(make_or_check(secret))
    if secret is None:
        raise InvalidInput(
            f"A {shop.kind} connector needs the webhook signing secret the shop shows.",
            code="missing_secret",
            field="secret",
        )
    return _check_secret(secret)


def _check_secret(secret: str) -> str:
    if not secret or len(secret) > MAX_SECRET or secret != secret.strip():
        raise InvalidInput(
            f"secret must be 1 to {MAX_SECRET} characters without surrounding spaces: "
            "the webhook signing secret exactly as the shop shows it.",
            code="invalid_secret",
            field="secret",
        )
    return secret


def _check_credentials(shop: ConnectorKind, credentials: Mapping[str, Any]) -> dict[str, str]:
    unknown = sorted(set(credentials) - set(shop.credential_fields))
    if unknown:
        raise InvalidInput(
            f"Unknown credential {unknown[0]!r} for a {shop.kind} connector; "
            f"known: {', '.join(shop.credential_fields) or 'none'}.",
            code="unknown_credential",
            field=f"credentials.{unknown[0]}",
        )
    cleaned = {}
    for name, value in credentials.items():
        if not isinstance(value, str) or not value or len(value) > 2048:
            raise InvalidInput(
                f"credentials.{name} must be text of 1 to 2048 characters.",
                code="invalid_credential",
                field=f"credentials.{name}",
            )
        cleaned[name] = value
    check = getattr(shop, "check_credentials", None)  # which ones a kind needs together
    if check is not None:
        check(cleaned)
    return cleaned


def create(
    session: Session,
    cipher: FieldCipher,
    *,
    shop: ConnectorKind,
    program_id: str,
    settings: Mapping[str, Any],
    secret: str | None,
    credentials: Mapping[str, Any],
    now: datetime,
) -> Connector:
    """Store a connector. `secret`: the signing secret the shop shows (required
    for shops); an outgoing kind checks the one given or makes one."""
    programs.get_or_raise(session, program_id)
    # API credentials may come inside settings (e.g. WooCommerce consumer_key):
    # they are kept encrypted with the other credentials, never as plain settings.
    settings = dict(settings)
    credentials = dict(credentials)
    for name in shop.credential_fields:
        if name in settings:
            credentials.setdefault(name, settings.pop(name))
    connector_id = new_id("connector")
    connector = Connector(
        id=connector_id,
        program_id=program_id,
        kind=shop.kind,
        settings=_validated(shop, settings),
        secret_enc=cipher.encrypt(_secret_for(shop, secret), field=SECRET_FIELD),
        previous_secret_enc=None,
        credentials_enc=_encrypt_credentials(cipher, _check_credentials(shop, credentials)),
        cursor=None,
        created_at=now,
        updated_at=now,
    )
    session.add(connector)
    session.flush()
    return connector


def _encrypt_credentials(cipher: FieldCipher, credentials: dict[str, str]) -> str | None:
    if not credentials:
        return None
    return cipher.encrypt(json.dumps(credentials, sort_keys=True), field=CREDENTIALS_FIELD)


def rotate_secret(
    session: Session,
    cipher: FieldCipher,
    *,
    kind: ConnectorKind,
    connector: Connector,
    secret: str | None,
    now: datetime,
) -> str:
    """The new secret signs from now on; the current one stays valid until the next
    rotation. Returns the new secret (made here for outgoing kinds if none given)."""
    new = _secret_for(kind, secret)
    connector.previous_secret_enc = connector.secret_enc
    connector.secret_enc = cipher.encrypt(new, field=SECRET_FIELD)
    connector.updated_at = now
    return new


def get_or_raise(
    session: Session, connector_id: str, *, program_id: str | None = None
) -> Connector:
    connector = session.get(Connector, connector_id)
    if connector is None or (program_id is not None and connector.program_id != program_id):
        raise NotFound(f"No connector {connector_id}.", code="connector_not_found")
    return connector


@dataclass(frozen=True)
class Receiving:
    """What checking a webhook needs of its connector, read and decrypted once per
    webhook batch: kind, program, secrets (current first) and run-time config."""

    id: str
    kind: str
    program_id: str
    secrets: list[str]
    config: ConnectorConfig


# Built once (the webhook batch's hot path): the ids go in as an expanding parameter.
_RECEIVING = (
    select(
        Connector.id,
        Connector.kind,
        Connector.program_id,
        Connector.secret_enc,
        Connector.previous_secret_enc,
        Connector.credentials_enc,
        Connector.settings,
        Program.currency,
    )
    .join(Program, Program.id == Connector.program_id)
    .where(Connector.id.in_(bindparam("ids", expanding=True)))
)


class Decrypted:
    """Ciphertext -> plaintext of connector secrets, remembered: a webhook batch
    reads the connector's columns fresh each time (a rotation or deletion counts at
    once), but the same ciphertext always opens to the same text, so each is
    decrypted once. Bounded; kept in memory only, like the cipher's keys."""

    def __init__(self, cipher: FieldCipher, *, max_entries: int = 1024) -> None:
        self._cipher = cipher
        self._max = max_entries
        self._known: dict[tuple[str, str], str] = {}

    def __call__(self, token: str, *, field: str) -> str:
        found = self._known.get((token, field))
        if found is None:
            found = self._cipher.decrypt(token, field=field)
            if len(self._known) >= self._max:
                self._known.clear()
            self._known[(token, field)] = found
        return found


def receiving(
    session: Session, decrypt: Decrypted, connector_ids: Sequence[str]
) -> dict[str, Receiving]:
    """The connectors among `connector_ids` that exist, in one query (the webhook
    batch's hot path: no ORM objects)."""
    found = {}
    for row in session.execute(_RECEIVING, {"ids": list(connector_ids)}):
        secrets = [decrypt(row.secret_enc, field=SECRET_FIELD)]
        if row.previous_secret_enc:
            secrets.append(decrypt(row.previous_secret_enc, field=SECRET_FIELD))
        credentials: dict[str, str] = {}
        if row.credentials_enc:
            credentials = json.loads(decrypt(row.credentials_enc, field=CREDENTIALS_FIELD))
        found[row.id] = Receiving(
            id=row.id,
            kind=row.kind,
            program_id=row.program_id,
            secrets=secrets,
            config=ConnectorConfig(
                connector_id=row.id,
                program_currency=row.currency,
                settings=dict(row.settings),
                credentials=credentials,
            ),
        )
    return found


def list_connectors(
    session: Session, *, program_id: str | None, after: str | None = None, limit: int = 100
) -> list[Connector]:
    query = select(Connector).order_by(Connector.id).limit(limit)
    if program_id is not None:
        query = query.where(Connector.program_id == program_id)
    if after is not None:
        query = query.where(Connector.id > after)
    return list(session.scalars(query))


def secrets_of(cipher: FieldCipher, connector: Connector) -> list[str]:
    """Current secret first, then the previous one during a rotation."""
    found = [cipher.decrypt(connector.secret_enc, field=SECRET_FIELD)]
    if connector.previous_secret_enc:
        found.append(cipher.decrypt(connector.previous_secret_enc, field=SECRET_FIELD))
    return found


def config_of(session: Session, cipher: FieldCipher, connector: Connector) -> ConnectorConfig:
    program = programs.get_or_raise(session, connector.program_id)
    credentials: dict[str, str] = {}
    if connector.credentials_enc:
        credentials = json.loads(cipher.decrypt(connector.credentials_enc, field=CREDENTIALS_FIELD))
    return ConnectorConfig(
        connector_id=connector.id,
        program_currency=program.currency,
        settings=dict(connector.settings),
        credentials=credentials,
    )


def save_credentials(
    cipher: FieldCipher, connector: Connector, credentials: Mapping[str, str], *, now: datetime
) -> None:
    """Replace the stored credentials (e.g. after an OAuth token refresh)."""
    connector.credentials_enc = _encrypt_credentials(cipher, dict(credentials))
    connector.updated_at = now


def save_cursor(connector: Connector, cursor: dict[str, Any], *, now: datetime) -> None:
    connector.cursor = cursor
    connector.updated_at = now
