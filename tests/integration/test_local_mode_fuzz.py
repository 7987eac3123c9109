"""Local mode under generated hostile input: no traceback, documented exit codes, no password in
any output, nothing written outside the run's private temporary directory.

Hypothesis generates malformed DatabaseMigrations and ConfigMaps (unknown fields, wrong types,
nulls, bad keys, binaryData, other namespaces), file names, file encodings and database URLs
whose unencoded password holds every URL-special character. The profile is derandomized, so CI
runs the same cases every time; `CASES` counts what ran.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_input import GOOD_SQL, database_urls, files, secret_pieces
from lockstep.cli import local
from lockstep.cli import main as cli

pytestmark = pytest.mark.integration

CASES: dict[str, int] = {"tried": 0, "leaks": 0, "tracebacks": 0, "ran": 0}
DOCUMENTED_EXIT_CODES = {local.EXIT_READY, local.EXIT_NOT_READY, local.EXIT_INVALID_INPUT}


def snapshot(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@settings(
    max_examples=520,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(url=database_urls(), output=st.sampled_from(["text", "json", "yaml"]), data=st.data())
def test_hostile_input_never_leaks_crashes_or_writes_outside(
    url: tuple[str | None, str | None], output: str, data: st.DataObject
) -> None:
    CASES["tried"] += 1
    scheme = (url[0] or "").partition(":")[0]
    engine = scheme if scheme in ("postgresql", "mysql") else "sqlite"
    name, content = data.draw(files(engine))
    database_url, password = url
    with tempfile.TemporaryDirectory(prefix="h9-fuzz-") as scratch:
        root = Path(scratch)
        private_tmp, work = root / "tmp", root / "work"
        private_tmp.mkdir()
        work.mkdir()
        source = work / name
        source.write_bytes(content)
        before = snapshot(root)
        argv = ["apply", "-f", str(source), "--state-dir", str(work / "state"), "-o", output]
        if database_url is not None:
            argv += ["--database-url", database_url]
        out, err = io.StringIO(), io.StringIO()
        saved_tempdir = tempfile.tempdir
        tempfile.tempdir = str(private_tmp)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli.main(argv)
        except BaseException:
            CASES["tracebacks"] += 1
            raise
        finally:
            tempfile.tempdir = saved_tempdir
        written = snapshot(root) - before
        outside = {p for p in written if work / "state" not in (p, *p.parents)}
        leftovers = set(private_tmp.iterdir())
    everything = out.getvalue() + err.getvalue()
    CASES["ran"] += code != local.EXIT_INVALID_INPUT
    assert "Traceback" not in everything
    assert code in DOCUMENTED_EXIT_CODES, everything
    assert not outside, f"written outside the state dir: {outside}"
    assert not leftovers, f"the private temporary directory was not emptied: {leftovers}"
    if password is not None:
        leaked = [p for p in secret_pieces(password) if p in everything]
        if leaked:
            CASES["leaks"] += 1
        assert not leaked, f"{leaked} in:\n{everything}"


def test_the_property_ran_at_least_500_cases() -> None:
    """Runs after the property (file order, -p no:randomly in CI); alone it runs it itself."""
    if CASES["tried"] == 0:
        test_hostile_input_never_leaks_crashes_or_writes_outside()
    print(f"\nlocal-mode fuzz: {CASES}")
    assert CASES["tried"] >= 500
    assert CASES["leaks"] == 0
    assert CASES["tracebacks"] == 0
    assert CASES["ran"] >= 50, "too few cases reached the runner to mean anything"


RUNNER_CASES: dict[str, int] = {"tried": 0}


@settings(max_examples=120, derandomize=True, deadline=None, database=None)
@given(url=database_urls())
def test_the_runner_keeps_the_password_out_of_stderr_stdout_and_its_json_result(
    url: tuple[str | None, str | None],
) -> None:
    """`lockstep run` (a migration Job's container): the same URLs, through $DATABASE_URL."""
    database_url, password = url
    if database_url is None or password is None:
        return
    RUNNER_CASES["tried"] += 1
    with tempfile.TemporaryDirectory(prefix="h9-run-") as scratch:
        root = Path(scratch)
        (root / "src").mkdir()
        (root / "src" / "V1__init.sql").write_text(GOOD_SQL)
        result_file = root / "result.json"
        out, err = io.StringIO(), io.StringIO()
        argv = ["run", "--tool", "sql", "--source", str(root / "src")]
        argv += ["--result-file", str(result_file), "--lock-wait-seconds", "1"]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DATABASE_URL", database_url)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli.main(argv)
        result = result_file.read_text() if result_file.exists() else ""
    everything = out.getvalue() + err.getvalue() + result
    assert code != 0, everything  # no server listens on port 9
    assert "Traceback" not in everything
    assert result, "a failed run leaves its reason in the result file"
    leaked = [p for p in secret_pieces(password) if p in everything]
    assert not leaked, f"{leaked} in:\n{everything}"
