"""Alembic environment for the fastpose journal.

The Config is built in code (``fastpose.journal.db.alembic_config``) with the URL and, usually, an open
connection in ``config.attributes["connection"]``; no alembic.ini is needed. To write a new revision from
the source tree::

    python -c "from alembic import command; from fastpose.journal.db import alembic_config; \
command.revision(alembic_config('sqlite:///journal/fastpose.db'), 'what changed', rev_id='0003')"

then check ``tests/test_journal_migrations.py`` and bump ``HEAD_REVISION`` in ``fastpose/journal/db.py``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from fastpose.journal.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things in place
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # the caller holds the lock and the transaction
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
