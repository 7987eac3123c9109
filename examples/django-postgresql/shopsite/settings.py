"""Settings of the example shop: just enough for `manage.py migrate`.

The database comes from DATABASE_URL, which Lockstep's migration Job (and the
application's own pods) get from the Secret.
"""

import os
from urllib.parse import unquote, urlsplit

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS: list[str] = []
INSTALLED_APPS = ["shop"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_BACKENDS = {
    "postgresql": "django.db.backends.postgresql",
    "postgres": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
    "mariadb": "django.db.backends.mysql",
    "sqlite": "django.db.backends.sqlite3",
}


def database_from_url(url: str) -> dict[str, object]:
    """postgresql://user:password@host:5432/name -> a DATABASES entry (dj-database-url in small)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in _BACKENDS:
        raise ValueError(f"DATABASE_URL scheme {scheme!r} is not one of {sorted(_BACKENDS)}")
    if scheme == "sqlite":
        return {"ENGINE": _BACKENDS[scheme], "NAME": unquote(parts.path[1:]) or ":memory:"}
    if _BACKENDS[scheme].endswith("mysql"):
        import pymysql  # pure Python; stands in for mysqlclient, which needs a C build

        pymysql.install_as_MySQLdb()
    return {
        "ENGINE": _BACKENDS[scheme],
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
