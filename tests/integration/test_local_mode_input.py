"""Local mode (`lockstep apply -f`) on hostile input: a YAML file from a pull request must never
make it write outside its private temporary directory.

Kubernetes refuses ConfigMap keys outside ``[-._a-zA-Z0-9]+`` and object names that are not
DNS-1123 names; local mode refuses the same, before anything is written or run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml

from lockstep.cli import main as cli

pytestmark = pytest.mark.integration

GOOD_SQL = "CREATE TABLE t (id INTEGER PRIMARY KEY);\n"


def documents(keys: dict[str, str], name: str = "shop", namespace: str = "default") -> str:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "files", "namespace": namespace},
        "data": keys,
    }
    migration = {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": "files"}},
            "target": "head",
            "database": {"engine": "sqlite", "urlSecretRef": {"name": "db", "key": "url"}},
        },
    }
    return yaml.safe_dump_all([config_map, migration])


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def apply(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    source = tmp_path / "migration.yaml"
    source.write_text(text)
    code = cli.main(["apply", "-f", str(source), "--state-dir", str(tmp_path / "state")])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    "key",
    [
        "../escaped.sql",
        "../../home/escaped.sql",
        "/tmp/lockstep-escaped-absolute.sql",
        "sub/V1__x.sql",
        "..",
        ".",
        "..V1__x.sql",
        "V1 x.sql",
        "",
    ],
)
def test_a_key_kubernetes_refuses_is_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work" / "deeper"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    # Local mode's private temporary directory is created under tmp_path, so a key that climbs
    # out of it ("../x", "../../home/x") would land here and be seen.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    before = files_under(tmp_path)
    absolute = Path("/tmp/lockstep-escaped-absolute.sql")
    absolute.unlink(missing_ok=True)

    code, output = apply(work, documents({"V1__init.sql": GOOD_SQL, key: "-- attack\n"}), capsys)

    assert code == 2
    assert f"data key {key!r}" in output
    assert "nothing was run" in output
    assert "Traceback" not in output
    written = files_under(tmp_path) - before - {work / "migration.yaml"}
    assert written == set(), f"written: {sorted(map(str, written))}"
    assert not absolute.exists()


@pytest.mark.parametrize(
    ("name", "namespace"),
    [("../../escaped", "default"), ("shop", "../escaped"), ("Shop", "default"), ("shop", "a/b")],
)
def test_an_object_name_kubernetes_refuses_never_names_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, namespace: str
) -> None:
    code, output = apply(tmp_path, documents({"V1__init.sql": GOOD_SQL}, name, namespace), capsys)

    assert code == 2
    assert "metadata." in output
    assert not (tmp_path / "state").exists()
    assert list(tmp_path.rglob("*.sqlite")) == []


def test_valid_keys_and_names_still_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = {"V1__init.sql": GOOD_SQL, "U1__init.sql": "DROP TABLE t;\n", "README.md": "notes"}
    code, output = apply(tmp_path, documents(keys, name="shop.v1"), capsys)

    assert code == 0, output
    assert "Ready (Succeeded)" in output
    sqlite = tmp_path / "state" / "default-shop.v1.sqlite"
    assert sqlite.exists()
    assert sqlite.stat().st_size > 0
