"""Database URLs: identities, keys, lock names, redaction and driver mapping (no I/O)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from lockstep import database, errors, url_secrets
from lockstep.database import DatabaseIdentity
from lockstep.errors import InvalidDatabaseUrl

SECRET = "s3cr3t-Pa55"


class TestIdentity:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            (
                "postgresql://app:pw@DB.example.com:6543/shop",
                DatabaseIdentity("postgresql", "db.example.com", 6543, "shop"),
            ),
            ("postgres://app@db/shop", DatabaseIdentity("postgresql", "db", 5432, "shop")),
            (
                "postgresql+psycopg://app:pw@db/shop?sslmode=require",
                DatabaseIdentity("postgresql", "db", 5432, "shop"),
            ),
            ("mysql://app:pw@db/shop", DatabaseIdentity("mysql", "db", 3306, "shop")),
            ("mysql+pymysql://app:pw@db:3307/shop", DatabaseIdentity("mysql", "db", 3307, "shop")),
            ("mariadb://app:pw@db/shop", DatabaseIdentity("mariadb", "db", 3306, "shop")),
            (
                "sqlite:////var/lib/shop.db",
                DatabaseIdentity("sqlite", "", None, "/var/lib/shop.db"),
            ),
            ("sqlite://", DatabaseIdentity("sqlite", "", None, ":memory:")),
        ],
    )
    def test_parses(self, url: str, expected: DatabaseIdentity) -> None:
        assert database.identity_from_url(url) == expected

    def test_relative_sqlite_path_becomes_absolute(self) -> None:
        identity = database.identity_from_url("sqlite:///state/shop.db")
        assert identity.database == str(Path.cwd() / "state" / "shop.db")

    def test_family(self) -> None:
        assert database.identity_from_url("mariadb://u:p@h/d").family == "mysql"
        assert database.identity_from_url("postgres://u:p@h/d").family == "postgresql"

    def test_str_has_no_credentials(self) -> None:
        identity = database.identity_from_url(f"postgresql://app:{SECRET}@db/shop")
        assert str(identity) == "postgresql database shop on db:5432"
        assert "://" not in str(identity)

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            (f"oracle://app:{SECRET}@db/shop", "unsupported database URL scheme 'oracle'"),
            (f"postgresql://app:{SECRET}@db", "names no database"),
            (f"not a url {SECRET}", "cannot parse the database URL"),
            (f"postgresql://app:{SECRET}@db:notaport/shop", "cannot parse the database URL"),
        ],
    )
    def test_bad_urls_say_what_is_expected_without_the_password(
        self, url: str, message: str
    ) -> None:
        with pytest.raises(InvalidDatabaseUrl) as caught:
            database.identity_from_url(url)
        assert message in str(caught.value)
        assert SECRET not in str(caught.value)
        assert caught.value.reason == "InvalidDatabaseUrl"


class TestKeys:
    def test_database_key_is_a_short_stable_label_value(self) -> None:
        identity = DatabaseIdentity("postgresql", "db", 5432, "shop")
        key = database.database_key(identity)
        assert key == database.database_key(DatabaseIdentity("postgresql", "db", 5432, "shop"))
        assert len(key) == 16
        assert all(c in "0123456789abcdef" for c in key)

    def test_database_key_differs_per_database_but_not_per_password_or_driver(self) -> None:
        keys = {
            database.database_key(database.identity_from_url(url))
            for url in ("postgresql://a:1@db/shop", "postgres://b:2@db:5432/shop")
        }
        assert len(keys) == 1
        assert database.database_key(
            database.identity_from_url("mysql://a@db/shop")
        ) == database.database_key(database.identity_from_url("mariadb://a@db/shop"))
        assert database.database_key(
            database.identity_from_url("postgresql://a@db/shop")
        ) != database.database_key(database.identity_from_url("postgresql://a@db/other"))

    def test_advisory_lock_id_is_signed_64_bit(self) -> None:
        ids = {
            database.advisory_lock_id(DatabaseIdentity("postgresql", "db", 5432, f"db{n}"))
            for n in range(200)
        }
        assert len(ids) == 200
        assert all(-(2**63) <= i < 2**63 for i in ids)
        assert any(i < 0 for i in ids)

    def test_lock_key_ignores_the_host_name(self) -> None:
        # One server reached under two names must still be locked once.
        short = database.identity_from_url("postgresql://u@db/shop")
        long = database.identity_from_url("postgresql://u@db.shop.svc.cluster.local/shop")
        assert database.advisory_lock_id(short) == database.advisory_lock_id(long)

    def test_advisory_lock_name_fits_mysql(self) -> None:
        short = DatabaseIdentity("mysql", "db", 3306, "shop")
        assert database.advisory_lock_name(short) == "lockstep:shop"
        long_one = DatabaseIdentity("mysql", "db", 3306, "x" * 64)
        long_two = DatabaseIdentity("mysql", "db", 3306, "x" * 63 + "y")
        name = database.advisory_lock_name(long_one)
        assert len(name) <= 64
        assert name != database.advisory_lock_name(long_two)


class TestRedaction:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            (f"postgresql://app:{SECRET}@db/shop", "postgresql://app:***@db/shop"),
            (f"mysql+pymysql://app:{SECRET}@db:3306/x", "mysql+pymysql://app:***@db:3306/x"),
            ("postgresql://app@db/shop", "postgresql://app@db/shop"),
            (
                f"postgresql://db/shop?user=a&password={SECRET}",
                "postgresql://db/shop?user=a&password=***",
            ),
            ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
            (f"garbage://a:{SECRET}@", "garbage://a:***@"),
        ],
    )
    def test_redact_url(self, url: str, expected: str) -> None:
        assert url_secrets.redact_url(url) == expected

    def test_scrub_removes_the_password_from_any_text(self) -> None:
        url = f"postgresql://app:{SECRET}@db/shop"
        text = f"failed for {url} with password {SECRET}"
        scrubbed = url_secrets.scrub(text, url)
        assert SECRET not in scrubbed
        assert "postgresql://app:***@db/shop" in scrubbed


@pytest.mark.parametrize(
    "password",
    [
        "QXZjk/qxzJK",
        "QXZjk@qxzJK",
        "QXZjk:qxzJK",
        "QXZjk#qxzJK",
        "QXZjk?qxzJK",
        "QXZjk%qxzJK",
        "QXZjk qxzJK",
        "QXZjk@/:#?% qxzJK@@",
    ],
)
class TestUnencodedPasswords:
    """A password pasted into a URL unencoded is hidden whole, wherever a parser would cut it."""

    def test_redact_url_shows_none_of_it(self, password: str) -> None:
        shown = url_secrets.redact_url(f"postgresql://app:{password}@db:5432/shop")
        assert shown == "postgresql://app:***@db:5432/shop"

    def test_scrub_removes_it_and_its_pieces(self, password: str) -> None:
        url = f"postgresql://app:{password}@db/shop"
        text = f"host {password.split('@')[-1]} of {url}: auth failed for {quote(password)}"
        scrubbed = url_secrets.scrub(text, url)
        assert "QXZjk" not in scrubbed
        assert "qxzJK" not in scrubbed

    def test_the_url_connects_where_it_says(self, password: str) -> None:
        identity = database.identity_from_url(f"postgresql://app:{password}@db:5432/shop")
        assert (identity.host, identity.port, identity.database) == ("db", 5432, "shop")

    def test_a_query_password_is_hidden_whole(self, password: str) -> None:
        url = f"postgresql://db/shop?user=app&password={password}"
        assert "QXZjk" not in url_secrets.redact_url(url)
        assert "qxzJK" not in url_secrets.redact_url(url)


@pytest.mark.parametrize("value", ["QXZjkqxzJK", "app:QXZjk@db", "", "  QXZjk qxzJK  "])
def test_a_value_that_is_no_url_is_not_shown_at_all(value: str) -> None:
    assert url_secrets.redact_url(value) == url_secrets.NOT_SHOWN
    assert "QXZjk" not in url_secrets.scrub(f"bad value {value}", value)
    with pytest.raises(errors.InvalidDatabaseUrl) as raised:
        database.identity_from_url(value)
    assert "QXZjk" not in str(raised.value)


class TestEngines:
    @pytest.mark.parametrize(
        ("url", "driver"),
        [
            ("postgresql://u:p@db/shop", "postgresql+psycopg"),
            ("postgres://u:p@db/shop", "postgresql+psycopg"),
            ("postgresql+psycopg2://u:p@db/shop", "postgresql+psycopg"),
            ("mysql://u:p@db/shop", "mysql+pymysql"),
            ("mariadb://u:p@db/shop", "mysql+pymysql"),
            ("sqlite:////tmp/x.db", "sqlite+pysqlite"),
        ],
    )
    def test_driver_mapping(self, url: str, driver: str) -> None:
        assert database.driver_url(url).drivername == driver

    def test_mysql_defaults_to_utf8mb4(self) -> None:
        assert database.driver_url("mysql://u:p@db/shop").query["charset"] == "utf8mb4"
        assert (
            database.driver_url("mysql://u:p@db/shop?charset=latin1").query["charset"] == "latin1"
        )

    def test_runner_engines_do_not_pool(self) -> None:
        engine = database.make_engine("postgresql://u:p@db/shop")
        assert type(engine.pool).__name__ == "NullPool"
        pooled = database.make_engine("postgresql://u:p@db/shop", pooled=True)
        assert type(pooled.pool).__name__ == "QueuePool"

    def test_engine_repr_hides_the_password(self) -> None:
        engine = database.make_engine(f"postgresql://u:{SECRET}@db/shop")
        assert SECRET not in repr(engine)
        assert SECRET not in str(engine.url)
