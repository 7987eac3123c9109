"""Alembic environment: the database comes from DATABASE_URL.

Also works under Lockstep's own runner (ConfigMap sources), which opens the
connection itself and passes it in ``config.attributes["connection"]``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool
from sqlalchemy.engine import make_url

config = context.config
if config.config_file_name is not None:  # log to the Job's output
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = None  # the application's MetaData, for autogenerate

# The URL is shared with tools in other languages, so it names no Python driver;
# this image ships psycopg 3 (and PyMySQL for MySQL/MariaDB).
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
            "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}  # fmt: skip


def database_url() -> str:
    url = make_url(os.environ["DATABASE_URL"])
    driver = _DRIVERS.get(url.drivername)
    return (url.set(drivername=driver) if driver else url).render_as_string(hide_password=False)


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as own_connection:
        run_on(own_connection)


def run_migrations_offline() -> None:
    context.configure(url=database_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
