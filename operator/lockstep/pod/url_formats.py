"""``DATABASE_URL`` in the shapes other tools want (pure).

A migration pod gets the database as one URL, ``DATABASE_URL``, from the
user's Secret; the operator never copies credentials into a Job spec.  Most
tools read that URL as it is.  JVM tools (Flyway, Liquibase) want a JDBC URL
plus a separate user and password instead, so ``lockstep dburl`` (an init
container in Lockstep's image) converts the URL with :func:`env_for` and
writes :func:`render_env_file`'s output to a volume the migrate container
sources before it starts the tool.

Only the scheme, host, port, database and the query parameters the JDBC
drivers understand carry over: SQLAlchemy's driver suffix (``+psycopg``) and
its ``charset`` parameter mean nothing to a JDBC driver and are dropped.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from lockstep import constants, database
from lockstep.database import EngineName

# Parameters SQLAlchemy or Python drivers understand that JDBC drivers do not.
_DROPPED_PARAMETERS: Final = frozenset({"charset", "driver", "password", "user"})
_APPLICATION_NAME_KEYS: Final = frozenset({"applicationname", "application_name"})


@dataclass(frozen=True)
class JdbcConnection:
    url: str
    user: str | None
    password: str | None


def jdbc_connection(url: str) -> JdbcConnection:
    """Split ``url`` into a JDBC URL (no credentials in it) and the user and password."""
    identity = database.identity_from_url(url)  # validates, and says why in a safe message
    parsed = database.parse_url(url)  # reads an unencoded password whole
    if identity.engine == "sqlite":
        return JdbcConnection(f"jdbc:sqlite:{identity.database}", None, None)
    host = f"[{identity.host}]" if ":" in identity.host else identity.host  # IPv6 literal
    query = {k: v for k, v in parsed.query.items() if k.lower() not in _DROPPED_PARAMETERS}
    params = _jdbc_parameters(identity.engine, query)
    suffix = f"?{params}" if params else ""
    jdbc = f"jdbc:{_jdbc_scheme(identity.engine)}://{host}:{identity.port}/{identity.database}"
    return JdbcConnection(jdbc + suffix, parsed.username, parsed.password)


def _jdbc_scheme(engine: EngineName) -> str:
    # The engine always has a JDBC scheme here: sqlite returned earlier.
    return {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mariadb"}[engine]


def _jdbc_parameters(engine: EngineName, query: Mapping[str, str | tuple[str, ...]]) -> str:
    pairs: list[tuple[str, str]] = []
    if engine == "mysql":
        # Flyway ships MariaDB Connector/J, which accepts a jdbc:mysql: URL only with this
        # flag; MySQL Connector/J ignores it.
        pairs.append(("permitMysqlScheme", "true"))
    for key, value in query.items():
        values = (value,) if isinstance(value, str) else value
        pairs.extend((key, v) for v in values)
    if engine == "postgresql":
        # The PostgreSQL JDBC driver ignores PGAPPNAME: tag the migration's connections in the
        # URL, so that a later run's fence can find them (lockstep.pod.fence). Ours wins.
        pairs = [(k, v) for k, v in pairs if k.lower() not in _APPLICATION_NAME_KEYS]
        pairs.append(("ApplicationName", constants.MIGRATION_APPLICATION_NAME))
    return urlencode(pairs)


def flyway_env(url: str) -> dict[str, str]:
    """``FLYWAY_URL``, ``FLYWAY_USER``, ``FLYWAY_PASSWORD``: Flyway prefers them to its config.

    On MySQL/MariaDB also ``FLYWAY_INIT_SQL``: every connection Flyway opens tries to take the
    run's mark (:data:`lockstep.constants.RUN_MARK_SQL`), so the first one, which runs the
    migrations, can be found and ended by a later run's fence (lockstep.pod.fence). It replaces
    an ``initSql`` of the user's Flyway configuration.
    """
    env = _credentials_env(jdbc_connection(url), "FLYWAY_URL", "FLYWAY_USER", "FLYWAY_PASSWORD")
    if database.identity_from_url(url).family == "mysql":
        env["FLYWAY_INIT_SQL"] = constants.RUN_MARK_SQL
    return env


def jdbc_env(url: str) -> dict[str, str]:
    """``JDBC_URL`` / ``JDBC_USER`` / ``JDBC_PASSWORD`` for any other JDBC tool."""
    return _credentials_env(jdbc_connection(url), "JDBC_URL", "JDBC_USER", "JDBC_PASSWORD")


def _credentials_env(
    connection: JdbcConnection, url_key: str, user_key: str, password_key: str
) -> dict[str, str]:
    env = {url_key: connection.url}
    if connection.user is not None:
        env[user_key] = connection.user
    if connection.password is not None:
        env[password_key] = connection.password
    return env


def url_env(url: str) -> dict[str, str]:
    """``DATABASE_URL`` itself, for a tool in its image when the pod composes the URL from
    split Secret keys (spec.database.connection); checked first, so a bad part fails here."""
    database.identity_from_url(url)
    return {constants.DATABASE_URL_ENV: url}


FORMATS: Final[dict[str, Callable[[str], dict[str, str]]]] = {
    "flyway": flyway_env,
    "jdbc": jdbc_env,
    "url": url_env,
}


def env_for(format_name: str, url: str) -> dict[str, str]:
    """The variables of ``format_name`` for ``url``; ValueError names the known formats."""
    try:
        convert = FORMATS[format_name]
    except KeyError:
        raise ValueError(
            f"unknown URL format {format_name!r}; known formats: {', '.join(sorted(FORMATS))}"
        ) from None
    return convert(url)


def render_env_file(env: Mapping[str, str]) -> str:
    """POSIX shell ``export NAME='value'`` lines, safe to source whatever the values hold."""
    for name in env:
        if not name.isidentifier() or not name.isascii():
            raise ValueError(f"{name!r} is not a shell variable name")
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def describe(env: Mapping[str, str]) -> str:
    """What was written, for a log line: names only, never values."""
    return ", ".join(sorted(env))
