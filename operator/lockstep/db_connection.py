"""A database given as split Secret keys (host, port, ...) and TLS files, made into one URL.

Pure, no driver. Database operators hand credentials out as separate keys (CloudNativePG's
`<cluster>-app` Secret: host, port, dbname, user, password), so `spec.database.connection` takes
each part from a Secret key (or, for what is not secret, a literal value). Everything in Lockstep
speaks one URL, so the URL is composed where it is used: by the operator from the Secret's values
(:func:`compose_url`), and inside a pod from the environment variables the Job sets from the
same keys (:func:`url_from_environ`). Composing percent-encodes the user, password and database:
a password holding ``@ : / % #`` must reach the server as it is, and must never be cut where a
URL parser would cut it (and then shown as a "host" in an error). ADR 0010 says why the URL is
composed in the pod rather than by Kubernetes' ``$(VAR)`` expansion, which cannot encode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode

# The environment a Job sets from spec.database.connection; Lockstep's commands read it when
# DATABASE_URL is not set. The password variable comes from the Secret, never from the Job spec.
ENGINE_ENV: Final = "LOCKSTEP_DB_ENGINE"
HOST_ENV: Final = "LOCKSTEP_DB_HOST"
PORT_ENV: Final = "LOCKSTEP_DB_PORT"
NAME_ENV: Final = "LOCKSTEP_DB_NAME"
USER_ENV: Final = "LOCKSTEP_DB_USER"
PASSWORD_ENV: Final = "LOCKSTEP_DB_PASSWORD"  # noqa: S105 - a variable's name, not a password
PARAMS_ENV: Final = "LOCKSTEP_DB_PARAMS"
DATABASE_URL_ENV: Final = "DATABASE_URL"

# Where the Job mounts the TLS Secret (spec.database.tls), read-only, in every container that
# connects. The driver gets these paths as URL parameters.
TLS_DIR: Final = "/etc/lockstep/tls"
TLS_VOLUME: Final = "lockstep-tls"
# spec.database.connection field → environment variable, in URL order.
PART_ENVS: Final = (
    ("host", HOST_ENV),
    ("port", PORT_ENV),
    ("database", NAME_ENV),
    ("username", USER_ENV),
    ("password", PASSWORD_ENV),
)
# Parameters whose values are credentials: they come from Secret keys, never from the spec.
SECRET_PARAMETERS: Final = frozenset({"password", "passwd", "pwd", "user", "sslpassword"})
# The driver parameters naming TLS files, per protocol family: libpq (psycopg, node-postgres,
# pgjdbc) and PyMySQL (through SQLAlchemy), for the CA, the client certificate and its key.
_TLS_PARAMETERS: Final = {
    "postgresql": ("sslrootcert", "sslcert", "sslkey"),
    "mysql": ("ssl_ca", "ssl_cert", "ssl_key"),
}


@dataclass(frozen=True)
class KeyRef:
    """One key of a Secret in the migration's namespace (a SecretKeySelector)."""

    name: str
    key: str


@dataclass(frozen=True)
class Part:
    """One part of the connection: a literal value, or a Secret key (exactly one)."""

    value: str | None = None
    secret: KeyRef | None = None


@dataclass(frozen=True)
class Tls:
    """Certificate files from one Secret: the keys holding the CA, client certificate and key."""

    secret_name: str
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def files(self) -> tuple[tuple[str, str], ...]:
        """(Secret key, file name under TLS_DIR) for each file given, in CA, cert, key order."""
        named = (("ca", self.ca), ("cert", self.cert), ("key", self.key))
        return tuple((key, f"{role}.pem") for role, key in named if key is not None)


@dataclass(frozen=True)
class Connection:
    """spec.database.connection: the parts of the URL, and driver parameters (not secret)."""

    host: Part
    database: Part
    username: Part
    port: Part | None = None
    password: Part | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)

    def parts(self) -> tuple[tuple[str, Part], ...]:
        """(field name, part) of every part that is set, in :data:`PART_ENVS` order."""
        given = {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "username": self.username,
            "password": self.password,
        }
        return tuple((name, part) for name, _ in PART_ENVS if (part := given[name]) is not None)


class ConnectionSpecError(ValueError):
    """A connection spec Lockstep cannot use; `field` is the path below spec.database."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def tls_parameters(engine: str, tls: Tls | None) -> dict[str, str]:
    """The driver parameters that point at the mounted TLS files.

    PostgreSQL also gets ``sslmode=verify-full`` when a CA is given: a CA that is not used to
    verify the server would be a false sense of safety (spec parameters may choose otherwise).
    """
    if tls is None or engine == "sqlite":
        return {}
    family = "mysql" if engine in ("mysql", "mariadb") else "postgresql"
    roles = (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key))
    params = {
        name: f"{TLS_DIR}/{role}.pem"
        for (role, key), name in zip(roles, _TLS_PARAMETERS[family], strict=True)
        if key is not None
    }
    if family == "postgresql" and tls.ca is not None:
        params["sslmode"] = "verify-full"
    return params


def parameters(connection: Connection | None, engine: str, tls: Tls | None) -> dict[str, str]:
    """The URL's query: TLS file parameters, then the spec's own (which win)."""
    spec_parameters = dict(connection.parameters) if connection else {}
    return {**tls_parameters(engine, tls), **spec_parameters}


def compose_url(
    engine: str,
    host: str,
    database: str,
    username: str | None = None,
    password: str | None = None,
    port: str | None = None,
    query: Mapping[str, str] | None = None,
) -> str:
    """``engine://user:password@host:port/database?query``, every piece encoded.

    User, password and database are percent-encoded whole (``safe=""``), so no character in them
    can end the userinfo or the path; an IPv6 host gets its brackets.
    """
    userinfo = ""
    if username:
        userinfo = quote(username.strip(), safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        userinfo += "@"
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    netloc = f"{userinfo}{host}" + (f":{port.strip()}" if port and port.strip() else "")
    suffix = f"?{urlencode(sorted(query.items()))}" if query else ""
    return f"{engine}://{netloc}/{quote(database.strip(), safe='')}{suffix}"


def url_from_environ(environ: Mapping[str, str]) -> str | None:
    """The pod's database URL: ``DATABASE_URL`` as given, else composed from the split parts.

    None when neither is there; a partial set of parts (a Secret key missing) is an error that
    names the variables, never their values.
    """
    url = environ.get(DATABASE_URL_ENV)
    query = dict(parse_qsl(environ.get(PARAMS_ENV, ""), keep_blank_values=True))
    if url:
        return with_parameters(url, query)
    if not environ.get(HOST_ENV) and not environ.get(ENGINE_ENV):
        return None
    missing = [n for n in (ENGINE_ENV, HOST_ENV, NAME_ENV) if not environ.get(n)]
    if missing:
        raise ConnectionSpecError(
            "connection",
            f"${', $'.join(missing)} not set: the Job sets them from spec.database.connection",
        )
    return compose_url(
        engine=environ[ENGINE_ENV],
        host=environ[HOST_ENV],
        database=environ[NAME_ENV],
        username=environ.get(USER_ENV),
        password=environ.get(PASSWORD_ENV),
        port=environ.get(PORT_ENV),
        query=query,
    )


def with_parameters(url: str, query: Mapping[str, str]) -> str:
    """``url`` with the parameters it does not set yet (the URL's own win).

    Cut after the userinfo's *last* ``@``, so that an unencoded ``?`` in a password is not
    taken for the start of the query.
    """
    if not query:
        return url
    head, at, rest = url.rpartition("@")
    if not at:
        scheme, sep, rest = url.partition("://")
        head, at = (scheme + sep, "") if sep else ("", "")
    present = {k.lower() for k, _ in parse_qsl(rest.partition("?")[2], keep_blank_values=True)}
    extra = {k: v for k, v in sorted(query.items()) if k.lower() not in present}
    if not extra:
        return url
    joiner = "&" if "?" in rest else "?"
    return f"{head}{at}{rest}{joiner}{urlencode(extra)}"


def encode_parameters(query: Mapping[str, str]) -> str:
    """The value of :data:`PARAMS_ENV` (sorted, so the Job spec does not change between runs)."""
    return urlencode(sorted(query.items()))


# --------------------------------------------------------------------------- parsing the spec


def parse_connection(raw: Mapping[str, Any]) -> Connection:
    """spec.database.connection, re-checked as the CRD checks it (for resources made before)."""
    params = raw.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise ConnectionSpecError("connection.parameters", "must be an object of strings")
    secret = sorted(k for k in params if str(k).lower() in SECRET_PARAMETERS)
    if secret:
        raise ConnectionSpecError(
            f"connection.parameters.{secret[0]}",
            "holds a credential: take it from a Secret key (connection.username, "
            "connection.password) instead of writing it into the spec",
        )
    password = _part(raw, "password", required=False)
    if password is not None and password.secret is None:
        raise ConnectionSpecError("connection.password", "must come from a secretKeyRef")
    host, database, username = (
        _part(raw, n, required=True) for n in ("host", "database", "username")
    )
    assert host is not None and database is not None and username is not None
    return Connection(
        host=host,
        database=database,
        username=username,
        port=_part(raw, "port", required=False),
        password=password,
        parameters={str(k): str(v) for k, v in params.items()},
    )


def parse_tls(raw: Mapping[str, Any]) -> Tls:
    name = raw.get("secretName")
    if not name:
        raise ConnectionSpecError("tls.secretName", "is required: the Secret with the certificates")
    tls = Tls(
        secret_name=str(name),
        ca=_optional(raw, "ca"),
        cert=_optional(raw, "cert"),
        key=_optional(raw, "key"),
    )
    if not tls.files():
        raise ConnectionSpecError("tls", "names no file: set ca, or cert and key, or all three")
    if (tls.cert is None) != (tls.key is None):
        raise ConnectionSpecError(
            "tls", "a client certificate needs its key: set both cert and key"
        )
    return tls


def _optional(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return str(value) if value else None


def _part(raw: Mapping[str, Any], name: str, required: bool) -> Part | None:
    value = raw.get(name)
    path = f"connection.{name}"
    if value is None:
        if required:
            raise ConnectionSpecError(path, "is required: a value or a secretKeyRef")
        return None
    if not isinstance(value, Mapping) or ("value" in value) == ("secretKeyRef" in value):
        raise ConnectionSpecError(path, "needs exactly one of value or secretKeyRef")
    if "value" in value:
        return Part(value=str(value["value"]))
    ref = value["secretKeyRef"]
    if not isinstance(ref, Mapping) or not ref.get("name") or not ref.get("key"):
        raise ConnectionSpecError(path, "secretKeyRef needs both name and key")
    return Part(secret=KeyRef(name=str(ref["name"]), key=str(ref["key"])))
