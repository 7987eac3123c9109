"""What local mode says when something is wrong: one or two lines, what, where, what to do.

Never a traceback, never a temporary directory that is gone by the time anyone reads the message,
always the revision and the target; `-o json` is a list whatever the number of migrations; exit
codes as `lockstep apply --help` documents them.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockstep.cli import local
from lockstep.cli import main as cli

pytestmark = pytest.mark.integration

GOOD_SQL = "CREATE TABLE t (id INTEGER PRIMARY KEY);\n"


def stream(
    data: dict[str, str] | None = None,
    *,
    binary: dict[str, bytes] | None = None,
    engine: str = "sqlite",
    config_map_namespace: str = "default",
    **spec: Any,
) -> list[dict[str, Any]]:
    config_map: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "files", "namespace": config_map_namespace},
        "data": data if data is not None else {"V1__init.sql": GOOD_SQL},
    }
    if binary:
        config_map["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    migration = {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {"name": "shop"},
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": "files"}},
            "database": {"engine": engine, "urlSecretRef": {"name": "db", "key": "url"}},
            **spec,
        },
    }
    return [config_map, migration]


def apply(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | bytes | list[dict[str, Any]],
    *extra: str,
) -> tuple[int, str, str]:
    source = tmp_path / "migration.yaml"
    if isinstance(content, list):
        content = yaml.safe_dump_all(content)
    if isinstance(content, str):
        content = content.encode()
    source.write_bytes(content)
    code = cli.main(["apply", "-f", str(source), "--state-dir", str(tmp_path / "state"), *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_a_latin1_file_is_one_line_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = yaml.safe_dump_all(stream(), allow_unicode=True).replace("default", "défault", 1)
    code, out, err = apply(tmp_path, capsys, text.encode("latin-1"))
    assert code == local.EXIT_INVALID_INPUT
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "is not UTF-8; save the file as UTF-8" in err


def test_broken_yaml_says_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = apply(tmp_path, capsys, "kind: ConfigMap\nmetadata: {name: [x\n")
    assert code == local.EXIT_INVALID_INPUT
    assert "not valid YAML: line" in err


def test_a_misspelled_field_is_refused_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = apply(tmp_path, capsys, stream(targt="1"))
    assert code == local.EXIT_INVALID_INPUT
    assert "spec.targt: unknown field" in err
    assert not (tmp_path / "state").exists()


def test_a_latin1_sql_file_in_binary_data_names_the_config_map_not_a_temp_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = {"V2__more.sql": "-- café\nCREATE TABLE u (id INTEGER);\n".encode("latin-1")}
    code, out, _ = apply(tmp_path, capsys, stream(binary=binary))
    assert code == local.EXIT_NOT_READY
    assert "ConfigMap files" in out
    assert "/lockstep-" not in out  # the gone temporary directory
    assert "(target head)" in out


def test_a_failed_file_shows_the_revision_reached_and_the_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = {"V1__init.sql": GOOD_SQL, "V2__bad.sql": "CREATE TABLE broken (;\n"}
    code, out, _ = apply(tmp_path, capsys, stream(data, target="2"))
    assert code == local.EXIT_NOT_READY
    assert "revision:  1 (target 2)" in out
    assert "V2__bad.sql" in out


def test_a_config_map_in_another_namespace_is_reported_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = apply(tmp_path, capsys, stream(config_map_namespace="other"))
    assert code == local.EXIT_NOT_READY
    assert "ConfigMap files is in namespace other, not in default" in out
    assert "not in the file" not in out


def test_json_is_a_list_even_for_one_migration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = apply(tmp_path, capsys, stream(), "-o", "json")
    assert code == local.EXIT_READY
    statuses = json.loads(out)
    assert isinstance(statuses, list)
    assert [s["name"] for s in statuses] == ["shop"]


def test_sqlite_standing_in_for_another_engine_is_said_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = apply(tmp_path, capsys, stream(engine="postgresql"), "-o", "json")
    assert code == local.EXIT_READY
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1
    assert "engine is postgresql, but no --database-url" in notes[0]
    assert "SQLite file" in notes[0]
    assert json.loads(out)[0]["database"].startswith("SQLite file")


def test_an_engine_the_url_contradicts_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code, _, err = apply(tmp_path, capsys, stream(engine="postgresql"), "--database-url", url)
    assert code == local.EXIT_INVALID_INPUT
    assert "spec.database.engine is postgresql but --database-url is a sqlite URL" in err


def test_a_database_url_that_is_no_url_is_not_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = apply(tmp_path, capsys, stream(), "--database-url", "QXZjk-hunter2")
    assert code == local.EXIT_INVALID_INPUT
    assert "QXZjk" not in out + err
    assert "(not shown)" in err


def test_apply_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["apply", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 every DatabaseMigration is Ready; 1 at least one is not Ready" in text
    assert "2 invalid input" in text
