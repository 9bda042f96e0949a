"""partnerloop.core.settings: reading the environment, and the secret key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from partnerloop.core.settings import (
    Settings,
    SettingsError,
    ensure_secret_key,
    load_old_secret_keys,
    load_secret_key,
)

KEY_HEX = "11" * 32


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"PARTNERLOOP_DATA_DIR": str(tmp_path / "data"), **env})


# --- from_env: defaults ------------------------------------------------------------------


def test_defaults_put_the_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    data_dir = (tmp_path / "data").resolve()
    assert settings.data_dir == data_dir
    assert settings.database_url == f"sqlite:///{data_dir}/partnerloop.db"
    assert settings.secret_key_path == data_dir / "secret.key"
    assert settings.is_sqlite is True
    assert settings.runs_worker_in_process is True
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.secret_key_hex is None
    assert settings.old_secret_keys_hex == ()
    assert settings.trust_forwarded_for is False
    assert settings.worker_in_process is None
    assert settings.worker_max_attempts == 10
    assert settings.worker_lease_seconds == 60.0
    assert settings.worker_poll_seconds == 0.5
    assert settings.click_batch_max == 1000
    assert settings.log_level == "info"
    assert settings.faults == {}


def test_default_data_dir_is_data_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_env({})

    assert settings.data_dir == tmp_path.resolve() / "data"
    assert settings.data_dir.is_absolute()
    assert settings.database_url == f"sqlite:///{tmp_path.resolve()}/data/partnerloop.db"


def test_relative_and_home_data_dirs_are_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    relative = Settings.from_env({"PARTNERLOOP_DATA_DIR": "var/../pl"})
    home = Settings.from_env({"PARTNERLOOP_DATA_DIR": "~/pl"})

    assert relative.data_dir == tmp_path.resolve() / "pl"
    assert home.data_dir == (tmp_path / "home").resolve() / "pl"


def test_from_env_without_a_mapping_reads_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTNERLOOP_DATA_DIR", str(tmp_path / "from-os"))
    monkeypatch.setenv("PARTNERLOOP_CLICK_BATCH_MAX", "7")

    settings = Settings.from_env()

    assert settings.data_dir == (tmp_path / "from-os").resolve()
    assert settings.click_batch_max == 7


# --- from_env: values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:pw@db:5432/pl", "postgresql+psycopg://u:pw@db:5432/pl"),
        ("postgresql://u@db/pl", "postgresql+psycopg://u@db/pl"),
        ("postgresql+psycopg://u@db/pl", "postgresql+psycopg://u@db/pl"),
    ],
)
def test_postgres_urls_are_normalised_to_psycopg(tmp_path: Path, url: str, expected: str) -> None:
    settings = _settings(tmp_path, PARTNERLOOP_DATABASE_URL=url)

    assert settings.database_url == expected
    assert settings.is_sqlite is False
    assert settings.runs_worker_in_process is False


def test_an_explicit_sqlite_url_is_kept(tmp_path: Path) -> None:
    settings = _settings(tmp_path, PARTNERLOOP_DATABASE_URL="sqlite:////srv/pl.db")

    assert settings.database_url == "sqlite:////srv/pl.db"


def test_an_empty_database_url_means_the_default(tmp_path: Path) -> None:
    settings = _settings(tmp_path, PARTNERLOOP_DATABASE_URL="")

    assert settings.database_url == f"sqlite:///{(tmp_path / 'data').resolve()}/partnerloop.db"


def test_values_are_read_and_cleaned(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        PARTNERLOOP_PUBLIC_URL="https://track.example.com/",
        PARTNERLOOP_SECRET_KEY=KEY_HEX,
        PARTNERLOOP_OLD_SECRET_KEYS=" aa , ,bb,",
        PARTNERLOOP_WORKER_MAX_ATTEMPTS="3",
        PARTNERLOOP_WORKER_LEASE_SECONDS="2.5",
        PARTNERLOOP_WORKER_POLL_SECONDS="0.05",
        PARTNERLOOP_CLICK_BATCH_MAX="1",
        PARTNERLOOP_LOG_LEVEL="DEBUG",
    )

    assert settings.public_url == "https://track.example.com"
    assert settings.secret_key_hex == KEY_HEX
    assert settings.old_secret_keys_hex == ("aa", "bb")
    assert settings.worker_max_attempts == 3
    assert settings.worker_lease_seconds == 2.5
    assert settings.worker_poll_seconds == 0.05
    assert settings.click_batch_max == 1
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_booleans(tmp_path: Path, value: str, expected: bool) -> None:
    settings = _settings(tmp_path, PARTNERLOOP_TRUST_FORWARDED_FOR=value)

    assert settings.trust_forwarded_for is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", None), ("AUTO", None), ("", None), ("true", True), ("0", False)],
)
def test_worker_in_process_is_a_tristate(tmp_path: Path, value: str, expected: bool | None) -> None:
    settings = _settings(
        tmp_path,
        PARTNERLOOP_DATABASE_URL="postgresql://u@db/pl",
        PARTNERLOOP_WORKER_IN_PROCESS=value,
    )

    assert settings.worker_in_process is expected
    assert settings.runs_worker_in_process is (expected is True)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PARTNERLOOP_TRUST_FORWARDED_FOR", "maybe", "must be true or false, not 'maybe'."),
        ("PARTNERLOOP_WORKER_IN_PROCESS", "sometimes", "must be true or false, not 'sometimes'."),
        ("PARTNERLOOP_WORKER_MAX_ATTEMPTS", "ten", "must be a whole number, not 'ten'."),
        ("PARTNERLOOP_WORKER_MAX_ATTEMPTS", "1.5", "must be a whole number, not '1.5'."),
        ("PARTNERLOOP_WORKER_MAX_ATTEMPTS", "0", "must be at least 1."),
        ("PARTNERLOOP_CLICK_BATCH_MAX", "-5", "must be at least 1."),
        ("PARTNERLOOP_WORKER_LEASE_SECONDS", "soon", "must be a number, not 'soon'."),
        ("PARTNERLOOP_WORKER_LEASE_SECONDS", "0", "must be greater than 0."),
        ("PARTNERLOOP_WORKER_POLL_SECONDS", "-0.5", "must be greater than 0."),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path, **{name: value})

    assert str(caught.value) == f"{name} {message}"


@pytest.mark.parametrize("value", ["nan", "inf", "-nan"])
@pytest.mark.parametrize(
    "name", ["PARTNERLOOP_WORKER_LEASE_SECONDS", "PARTNERLOOP_WORKER_POLL_SECONDS"]
)
def test_non_finite_seconds_are_refused(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        _settings(tmp_path, **{name: value})


# --- PARTNERLOOP_FAULTS ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("job.before_commit=sleep:30", {"job.before_commit": "sleep:30"}),
        (
            " job.before_commit = sleep:30 , delivery.before_send=exit,",
            {"job.before_commit": "sleep:30", "delivery.before_send": "exit"},
        ),
        ("job.after_commit=exit,job.after_commit=sleep:1", {"job.after_commit": "sleep:1"}),
    ],
)
def test_faults_are_parsed(tmp_path: Path, text: str, expected: dict[str, str]) -> None:
    settings = _settings(tmp_path, PARTNERLOOP_FAULTS=text)

    assert dict(settings.faults) == expected


def test_a_fault_without_an_action_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path, PARTNERLOOP_FAULTS="job.before_commit=exit,job.after_commit")

    assert str(caught.value) == (
        "PARTNERLOOP_FAULTS entry 'job.after_commit' must look like name=action."
    )


# --- the secret key ----------------------------------------------------------------------


def test_ensure_secret_key_creates_a_private_key_file_once(tmp_path: Path) -> None:
    # Given a data directory that does not exist yet
    settings = _settings(tmp_path)
    assert not settings.data_dir.exists()

    # When the key is ensured twice
    created = ensure_secret_key(settings)
    content = settings.secret_key_path.read_text()
    created_again = ensure_secret_key(settings)

    # Then the first call made a 0600 file with 64 hex characters, and the second left it alone
    assert created is True
    assert created_again is False
    assert stat.S_IMODE(settings.secret_key_path.stat().st_mode) == 0o600
    assert len(content) == 65
    assert content[-1] == "\n"
    assert len(bytes.fromhex(content.strip())) == 32
    assert settings.secret_key_path.read_text() == content
    assert load_secret_key(settings) == bytes.fromhex(content.strip())


def test_two_data_dirs_get_different_keys(tmp_path: Path) -> None:
    first = Settings.from_env({"PARTNERLOOP_DATA_DIR": str(tmp_path / "a")})
    second = Settings.from_env({"PARTNERLOOP_DATA_DIR": str(tmp_path / "b")})

    ensure_secret_key(first)
    ensure_secret_key(second)

    assert load_secret_key(first) != load_secret_key(second)


def test_ensure_secret_key_writes_nothing_when_the_key_comes_from_the_environment(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, PARTNERLOOP_SECRET_KEY=KEY_HEX)

    created = ensure_secret_key(settings)

    assert created is False
    assert not settings.secret_key_path.exists()
    assert load_secret_key(settings) == bytes([0x11] * 32)


def test_the_environment_key_wins_over_the_key_file(tmp_path: Path) -> None:
    ensure_secret_key(_settings(tmp_path))

    settings = _settings(tmp_path, PARTNERLOOP_SECRET_KEY=KEY_HEX)

    assert load_secret_key(settings) == bytes([0x11] * 32)


def test_load_secret_key_says_how_to_fix_a_missing_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    with pytest.raises(SettingsError) as caught:
        load_secret_key(settings)

    assert str(caught.value) == (
        f"No secret key at {settings.secret_key_path}. Run `partnerloop init` first "
        "(or set PARTNERLOOP_SECRET_KEY)."
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not a key\n", "is not hex."),
        ("zz" * 32, "is not hex."),
        ("abcd\n", "must be 32 bytes (64 hex characters)."),
        ("11" * 33, "must be 32 bytes (64 hex characters)."),
        ("", "must be 32 bytes (64 hex characters)."),
    ],
)
def test_load_secret_key_refuses_a_malformed_key_file(
    tmp_path: Path, content: str, problem: str
) -> None:
    settings = _settings(tmp_path)
    settings.data_dir.mkdir(parents=True)
    settings.secret_key_path.write_text(content)

    with pytest.raises(SettingsError) as caught:
        load_secret_key(settings)

    assert str(caught.value) == f"The secret key in {settings.secret_key_path} {problem}"


def test_load_secret_key_refuses_a_malformed_environment_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path, PARTNERLOOP_SECRET_KEY="12345")

    with pytest.raises(SettingsError) as caught:
        load_secret_key(settings)

    assert str(caught.value) == "The secret key in PARTNERLOOP_SECRET_KEY is not hex."


def test_old_secret_keys_are_decoded_and_checked(tmp_path: Path) -> None:
    good = _settings(tmp_path, PARTNERLOOP_OLD_SECRET_KEYS=f"{'22' * 32},{'33' * 32}")
    bad = _settings(tmp_path, PARTNERLOOP_OLD_SECRET_KEYS=f"{'22' * 32},abcd")

    assert load_old_secret_keys(good) == [bytes([0x22] * 32), bytes([0x33] * 32)]
    with pytest.raises(SettingsError, match="PARTNERLOOP_OLD_SECRET_KEYS must be 32 bytes"):
        load_old_secret_keys(bad)


def test_the_click_writer_is_a_process_unless_told_otherwise(tmp_path: Path) -> None:
    assert _settings(tmp_path).click_writer == "process"
    assert _settings(tmp_path, PARTNERLOOP_CLICK_WRITER="Thread").click_writer == "thread"
    with pytest.raises(SettingsError, match="PARTNERLOOP_CLICK_WRITER"):
        _settings(tmp_path, PARTNERLOOP_CLICK_WRITER="fork")


def test_a_worker_process_gives_up_cpu_priority_within_unix_nice_bounds(tmp_path: Path) -> None:
    assert _settings(tmp_path).worker_nice == 10
    assert _settings(tmp_path, PARTNERLOOP_WORKER_NICE="0").worker_nice == 0
    assert _settings(tmp_path, PARTNERLOOP_WORKER_NICE="19").worker_nice == 19
    for wrong in ("20", "-1", "low"):
        with pytest.raises(SettingsError, match="PARTNERLOOP_WORKER_NICE"):
            _settings(tmp_path, PARTNERLOOP_WORKER_NICE=wrong)
