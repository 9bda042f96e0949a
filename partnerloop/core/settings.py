"""Settings come from the environment, once, and are passed in from there.

Every setting is listed in `SETTINGS_DOC` so `partnerloop settings` and the
README can show them; nothing reads os.environ anywhere else.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from partnerloop.core.mail import mailer_from_url

SECRET_KEY_FILE = "secret.key"  # noqa: S105 (a file name, not a secret)
SQLITE_FILE = "partnerloop.db"
DEFAULT_ALLOWED_HOSTS = "localhost,127.0.0.1,[::1]"

# name -> (default shown to users, what it does)
SETTINGS_DOC: dict[str, tuple[str, str]] = {
    "PARTNERLOOP_DATA_DIR": ("./data", "Directory for the SQLite file and the secret key."),
    "PARTNERLOOP_DATABASE_URL": (
        "sqlite:///<data dir>/partnerloop.db",
        "SQLAlchemy URL. PostgreSQL: postgresql+psycopg://user@host/db",
    ),
    "PARTNERLOOP_SECRET_KEY": (
        "<data dir>/secret.key",
        "Hex master key (64 hex chars) for field encryption and blind indexes. "
        "Overrides the key file; use it when many machines share one PostgreSQL.",
    ),
    "PARTNERLOOP_OLD_SECRET_KEYS": (
        "",
        "Comma-separated former master keys, still accepted for decryption during a rotation.",
    ),
    "PARTNERLOOP_PUBLIC_URL": (
        "http://127.0.0.1:8000",
        "Base URL that tracking links and postback URLs are built on.",
    ),
    "PARTNERLOOP_ALLOWED_HOSTS": (
        DEFAULT_ALLOWED_HOSTS,
        "Comma-separated host names this installation answers to besides the host of "
        "PARTNERLOOP_PUBLIC_URL (admin, API, /r/ links). Programs' own portal and tracking "
        "domains are added in the admin; any other Host gets a 404.",
    ),
    "PARTNERLOOP_TRUST_FORWARDED_FOR": (
        "false",
        "Take the client IP from X-Forwarded-For, the host from X-Forwarded-Host and the "
        "scheme from X-Forwarded-Proto (only behind a proxy you run); off, all three are ignored.",
    ),
    "PARTNERLOOP_WORKER_IN_PROCESS": (
        "auto",
        "Run the job worker inside `serve`: auto (yes on SQLite), true or false.",
    ),
    "PARTNERLOOP_WORKER_MAX_ATTEMPTS": ("10", "Tries before a job is dead-lettered."),
    "PARTNERLOOP_WEBHOOK_TIMEOUT_SECONDS": (
        "10",
        "How long an outgoing webhook waits for the receiver's answer.",
    ),
    "PARTNERLOOP_WEBHOOK_DISABLE_AFTER": (
        "20",
        "Failed deliveries in a row after which an outgoing webhook endpoint is disabled "
        "(its messages are kept and can be replayed once it is enabled again).",
    ),
    "PARTNERLOOP_WORKER_LEASE_SECONDS": (
        "60",
        "How long a claimed job stays locked to its worker; after that another worker may "
        "take it over (that is how a killed worker's job runs again).",
    ),
    "PARTNERLOOP_WORKER_POLL_SECONDS": ("0.5", "Idle wait between polls for new jobs."),
    "PARTNERLOOP_WORKER_NICE": (
        "10",
        "CPU priority a `partnerloop worker` process gives up (0-19, Unix nice): on a "
        "machine it shares with `serve`, answering clicks and webhooks comes first and a "
        "burst is drained from the inbox afterwards. 0: same priority as serve. On "
        "PostgreSQL on the same machine its sessions' server processes get the value too "
        "(when the worker may renice them: root or the server's user). The worker inside "
        "serve (a thread) paces itself to the same share while webhooks arrive.",
    ),
    "PARTNERLOOP_CLICK_BATCH_MAX": ("1000", "Most clicks written in one group commit."),
    "PARTNERLOOP_CLICK_WRITER": (
        "process",
        "Where `serve` writes clicks: process (a click store process of its own, shared by "
        "every `--workers` process: the fastest redirects) or thread (inside each server "
        "process).",
    ),
    "PARTNERLOOP_LOG_LEVEL": ("info", "debug, info, warning or error."),
    "PARTNERLOOP_MAIL_URL": (
        "",
        "Where e-mail goes: smtp://user:password@host:587 (STARTTLS when offered; "
        "?security=starttls|none), smtps://user:password@host:465, or file:///dir (.eml "
        "files). Empty: .eml files in <data dir>/mail.",
    ),
    "PARTNERLOOP_MAIL_FROM": ("partnerloop <partnerloop@localhost>", "The From of e-mail sent."),
    "PARTNERLOOP_NOTIFY_EMAIL": (
        "",
        "Comma-separated addresses told about operational problems (an outgoing webhook "
        "endpoint disabled after failing). Empty: no notices.",
    ),
    "PARTNERLOOP_FAULTS": (
        "",
        "Testing aid: name=action pairs (e.g. job.before_commit=sleep:30) that pause or "
        "crash a process at a named point. Leave empty in production.",
    ),
}


LOG_LEVELS = ("debug", "info", "warning", "error")
CLICK_WRITERS = ("process", "thread")


class SettingsError(Exception):
    """A setting has a value partnerloop cannot use; the message says which."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    public_url: str = "http://127.0.0.1:8000"
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    secret_key_hex: str | None = None
    old_secret_keys_hex: tuple[str, ...] = ()
    trust_forwarded_for: bool = False
    worker_in_process: bool | None = None  # None: decide by database kind
    worker_max_attempts: int = 10
    worker_lease_seconds: float = 60.0
    worker_poll_seconds: float = 0.5
    worker_nice: int = 10
    click_batch_max: int = 1000
    click_writer: str = "process"
    webhook_timeout_seconds: float = 10.0
    webhook_disable_after: int = 20
    log_level: str = "info"
    mail_url: str = ""
    mail_from: str = "partnerloop <partnerloop@localhost>"
    notify_emails: tuple[str, ...] = ()
    faults: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / SECRET_KEY_FILE

    @property
    def runs_worker_in_process(self) -> bool:
        if self.worker_in_process is None:
            return self.is_sqlite
        return self.worker_in_process

    @property
    def installation_hosts(self) -> frozenset[str]:
        """The hosts that serve the whole installation (admin, API, /r/ links):
        the public URL's host and PARTNERLOOP_ALLOWED_HOSTS. Lower case, no port."""
        hostname = urlsplit(self.public_url).hostname or ""
        own = f"[{hostname}]" if ":" in hostname else hostname
        return frozenset({own, *self.allowed_hosts} - {""})

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("PARTNERLOOP_DATA_DIR", "./data")).expanduser().resolve()
        database_url = env.get("PARTNERLOOP_DATABASE_URL") or f"sqlite:///{data_dir / SQLITE_FILE}"
        old_keys = tuple(
            k.strip() for k in env.get("PARTNERLOOP_OLD_SECRET_KEYS", "").split(",") if k.strip()
        )
        return cls(
            data_dir=data_dir,
            database_url=_normalise_database_url(database_url),
            public_url=env.get("PARTNERLOOP_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
            secret_key_hex=env.get("PARTNERLOOP_SECRET_KEY") or None,
            old_secret_keys_hex=old_keys,
            allowed_hosts=_hosts(env, "PARTNERLOOP_ALLOWED_HOSTS", DEFAULT_ALLOWED_HOSTS),
            trust_forwarded_for=_bool(env, "PARTNERLOOP_TRUST_FORWARDED_FOR", False),
            worker_in_process=_tristate(env, "PARTNERLOOP_WORKER_IN_PROCESS"),
            worker_max_attempts=_int(env, "PARTNERLOOP_WORKER_MAX_ATTEMPTS", 10, minimum=1),
            worker_lease_seconds=_float(env, "PARTNERLOOP_WORKER_LEASE_SECONDS", 60.0),
            worker_poll_seconds=_float(env, "PARTNERLOOP_WORKER_POLL_SECONDS", 0.5),
            worker_nice=_int(env, "PARTNERLOOP_WORKER_NICE", 10, minimum=0, maximum=19),
            click_batch_max=_int(env, "PARTNERLOOP_CLICK_BATCH_MAX", 1000, minimum=1),
            click_writer=_choice(env, "PARTNERLOOP_CLICK_WRITER", "process", CLICK_WRITERS),
            webhook_timeout_seconds=_float(env, "PARTNERLOOP_WEBHOOK_TIMEOUT_SECONDS", 10.0),
            webhook_disable_after=_int(env, "PARTNERLOOP_WEBHOOK_DISABLE_AFTER", 20, minimum=1),
            log_level=_choice(env, "PARTNERLOOP_LOG_LEVEL", "info", LOG_LEVELS),
            mail_url=_mail_url(env.get("PARTNERLOOP_MAIL_URL", ""), data_dir),
            mail_from=env.get("PARTNERLOOP_MAIL_FROM") or "partnerloop <partnerloop@localhost>",
            notify_emails=_addresses(env, "PARTNERLOOP_NOTIFY_EMAIL"),
            faults=_faults(env.get("PARTNERLOOP_FAULTS", "")),
        )


def _mail_url(url: str, data_dir: Path) -> str:
    try:
        mailer_from_url(url, data_dir=data_dir)
    except ValueError as error:
        raise SettingsError(f"PARTNERLOOP_MAIL_URL: {error}.") from None
    return url.strip()


def _hosts(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    """Bare host names, lower case, without port ("Example.com:8443" -> "example.com")."""
    hosts: list[str] = []
    for raw in env.get(name, default).split(","):
        host = raw.strip().lower()
        if not host:
            continue
        if "/" in host or " " in host or "@" in host:
            raise SettingsError(f"{name}: {raw.strip()!r} is not a host name (no scheme or path).")
        if host.startswith("["):  # IPv6 literal, maybe with a port
            host = host.split("]")[0] + "]"
        elif host.count(":") == 1:
            host = host.split(":")[0]
        host = host.rstrip(".")
        if host and host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def _addresses(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    addresses = tuple(a.strip() for a in env.get(name, "").split(",") if a.strip())
    for address in addresses:
        _, parsed = parseaddr(address)
        if "@" not in parsed:
            raise SettingsError(f"{name}: {address!r} is not an e-mail address.")
    return addresses


def load_secret_key(settings: Settings) -> bytes:
    """The master key: from the environment, else from the key file made by `init`."""
    if settings.secret_key_hex:
        return _decode_key(settings.secret_key_hex, "PARTNERLOOP_SECRET_KEY")
    path = settings.secret_key_path
    if not path.exists():
        raise SettingsError(
            f"No secret key at {path}. Run `partnerloop init` first "
            "(or set PARTNERLOOP_SECRET_KEY)."
        )
    return _decode_key(path.read_text().strip(), str(path))


def load_old_secret_keys(settings: Settings) -> list[bytes]:
    return [_decode_key(k, "PARTNERLOOP_OLD_SECRET_KEYS") for k in settings.old_secret_keys_hex]


def ensure_secret_key(settings: Settings) -> bool:
    """Create the key file (mode 0600) if there is none. Returns True if it made one."""
    if settings.secret_key_hex:
        return False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.secret_key_path
    # O_EXCL: two `init`s racing never overwrite each other's key (that would make
    # everything the first one encrypted unreadable).
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return True


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise SettingsError(f"The secret key in {where} is not hex.") from None
    if len(key) != 32:
        raise SettingsError(f"The secret key in {where} must be 32 bytes (64 hex characters).")
    return key


def _normalise_database_url(url: str) -> str:
    # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}.")


def _tristate(env: Mapping[str, str], name: str) -> bool | None:
    value = env.get(name, "auto")
    if value.lower() in ("", "auto"):
        return None
    return _bool(env, name, False)


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {value!r}.") from None
    if number < minimum:
        raise SettingsError(f"{name} must be at least {minimum}.")
    if maximum is not None and number > maximum:
        raise SettingsError(f"{name} must be at most {maximum}.")
    return number


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {value!r}.") from None
    if not math.isfinite(number) or number <= 0:
        raise SettingsError(f"{name} must be greater than 0.")
    return number


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def _faults(text: str) -> dict[str, str]:
    faults: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, action = part.partition("=")
        if not sep:
            raise SettingsError(f"PARTNERLOOP_FAULTS entry {part!r} must look like name=action.")
        faults[name.strip()] = action.strip()
    return faults
