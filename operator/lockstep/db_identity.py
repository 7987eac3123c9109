"""Which database a URL points at (no credentials), and the keys derived from it; pure.

Apart from :mod:`lockstep.database` (which parses URLs with SQLAlchemy and builds engines) so
that code which must start fast (`lockstep run` on PostgreSQL, issue 21) can name databases,
take their locks and connect without importing SQLAlchemy. :func:`postgres_connect_params`
reads a PostgreSQL URL the way SQLAlchemy's URL parser and psycopg dialect do (the same
pattern, the same decoding), and gives up (None) on anything it does not read the same way, so
the caller can fall back to SQLAlchemy; a unit test holds both readings side by side.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args
from urllib.parse import parse_qsl, unquote

from lockstep import errors, url_secrets

EngineName = Literal["postgresql", "mysql", "mariadb", "sqlite"]
ENGINES: Final[tuple[str, ...]] = get_args(EngineName)
Family = Literal["postgresql", "mysql", "sqlite"]

DEFAULT_PORTS: Final[dict[str, int]] = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
_MYSQL_LOCK_NAME_MAX: Final = 64


@dataclass(frozen=True)
class DatabaseIdentity:
    """Which database a URL points at, without credentials.

    For SQLite, ``host`` is empty, ``port`` is None and ``database`` is the
    absolute path of the file (or ``:memory:``).
    """

    engine: EngineName
    host: str
    port: int | None
    database: str

    @property
    def family(self) -> Family:
        """The wire protocol: what decides SQL dialect, driver and lock kind."""
        return family_of(self.engine)

    def __str__(self) -> str:
        # Words, not a URL: messages that end up in status and Events must never look like (or
        # be mistaken for) connection strings.
        if self.engine == "sqlite":
            return f"SQLite file {self.database}"
        return f"{self.engine} database {self.database} on {self.host}:{self.port}"


def family_of(engine: EngineName) -> Family:
    """MariaDB speaks MySQL's protocol, and so do its locks."""
    return "mysql" if engine == "mariadb" else engine


def database_key(identity: DatabaseIdentity) -> str:
    """A stable 16-hex-digit key, usable as a Kubernetes label value.

    Uses the protocol family, so ``mysql://`` and ``mariadb://`` URLs of one
    server get the same key (one Job at a time per database).
    """
    material = f"{identity.family}\0{identity.host}\0{identity.port or ''}\0{identity.database}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def advisory_lock_id(identity: DatabaseIdentity) -> int:
    """Signed 64-bit key for ``pg_advisory_lock``.

    Derived from the database name only: PostgreSQL scopes advisory locks to
    the database already, and two URLs that reach one server under different
    host names must still compete for the same lock.
    """
    digest = hashlib.sha256(f"lockstep:{identity.database}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def advisory_lock_name(identity: DatabaseIdentity) -> str:
    """Name for MySQL/MariaDB ``GET_LOCK`` (at most 64 characters).

    ``GET_LOCK`` names are server-wide, so the name carries the database name
    (hashed when it would not fit), but not the host, for the reason given in
    :func:`advisory_lock_id`.
    """
    readable = f"lockstep:{identity.database}"
    if len(readable) <= _MYSQL_LOCK_NAME_MAX:
        return readable
    return "lockstep:" + hashlib.sha256(identity.database.encode()).hexdigest()[:40]


def connect_failed(url: str, driver_words: str) -> errors.DatabaseUnavailable:
    """A connection could not be opened: where to (password hidden), and the driver's words."""
    lines = driver_words.strip().splitlines()
    detail = url_secrets.scrub(lines[0] if lines else "", url)
    return errors.DatabaseUnavailable(
        f"cannot connect to {url_secrets.redact_url(url)}: {detail}; "
        "check that the server is up, "
        f"reachable from this pod, and that the URL's user and password are right"
    )


# --------------------------------------------------------------------------- PostgreSQL, lean

# SQLAlchemy's own URL pattern (sqlalchemy.engine.url._parse_url), so both read a URL alike.
_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)
_PG_SCHEMES: Final = frozenset({"postgresql", "postgres"})
_PG_DRIVERS: Final = frozenset({"", "psycopg", "psycopg2"})
# Query keys SQLAlchemy's dialect treats on its own (several hosts) or that would change where
# the connection goes: left to the SQLAlchemy path.
_PG_SPECIAL_KEYS: Final = frozenset({"host", "port", "hostaddr", "dbname", "user", "password"})


def postgres_connect_params(url: str) -> tuple[DatabaseIdentity, dict[str, Any]] | None:
    """A PostgreSQL URL's identity and psycopg's connect keywords, as the SQLAlchemy path
    would derive them; None for any URL this reading does not cover (another engine, several
    hosts, a repeated query key, a malformed part): the caller then uses :mod:`lockstep.database`.
    """
    match = _URL.fullmatch(url_secrets.encode_stray_delimiters(url))
    if match is None:
        return None
    scheme, _, driver = match["name"].lower().partition("+")
    if scheme not in _PG_SCHEMES or driver not in _PG_DRIVERS:
        return None
    pairs = parse_qsl(match["query"]) if match["query"] is not None else []
    query = dict(pairs)
    if len(query) != len(pairs) or _PG_SPECIAL_KEYS & query.keys():
        return None
    port_text = match["port"]
    if port_text and not port_text.isdigit():
        return None
    database = unquote(match["database"]) if match["database"] else ""
    if not database or "," in (match["ipv4host"] or ""):
        return None
    host = match["ipv4host"] or match["ipv6host"]
    port = int(port_text) if port_text else None
    params: dict[str, Any] = {"dbname": database}
    if match["username"] is not None:
        params["user"] = unquote(match["username"])
    if match["password"] is not None:
        params["password"] = unquote(match["password"])
    if host:
        params["host"] = host
    if port is not None:
        params["port"] = port
    params.update(query)
    identity = DatabaseIdentity(
        "postgresql", (host or "localhost").lower(), port or DEFAULT_PORTS["postgresql"], database
    )
    return identity, params
