"""The migrations build exactly the schema the models describe, on both backends,
and can be rolled back and re-applied."""

from __future__ import annotations

import secrets

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from partnerloop.core.db import make_engine
from partnerloop.core.migrate import alembic_config, is_current, upgrade
from partnerloop.core.models_registry import metadata
from partnerloop.runtime import Runtime
from tests.conftest import PG_ADMIN_URL, Backend


def test_schema_built_by_migrations_matches_the_models(runtime: Runtime) -> None:
    with runtime.engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), metadata()
        )

    assert diff == []
    assert is_current(runtime.engine)


def test_downgrade_to_nothing_and_upgrade_again(backend: Backend, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    # A database of its own: the shared test database stays untouched.
    if backend.name == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('migrations') / 'm.db'}"
        cleanup = None
    else:
        schema = f"pl_mig_{secrets.token_hex(4)}"
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
        cleanup = (admin, schema)
    engine = make_engine(url)
    try:
        upgrade(engine)
        tables = set(inspect(engine).get_table_names())
        assert {
            "programs",
            "affiliates",
            "clicks",
            "conversions",
            "commissions",
            "inbound_events",
            "outbox_messages",
        } <= tables

        config = alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        upgrade(engine)
        assert set(inspect(engine).get_table_names()) == tables
    finally:
        engine.dispose()
        if cleanup is not None:
            admin, schema = cleanup
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
