"""Hypothesis strategies for hostile local-mode input, shared by the fuzz and parity tests.

Malformed DatabaseMigrations and ConfigMaps (unknown fields, wrong types, nulls, keys Kubernetes
refuses, binaryData, other namespaces), files in other encodings, and database URLs whose
unencoded password holds every URL-special character.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import yaml
from hypothesis import strategies as st

URL_SPECIALS = "/@:#?% "
GOOD_SQL = "CREATE TABLE t (id INTEGER PRIMARY KEY);\n"

# Letters that no word or number of a message strings together five times, so that a match in
# the output is a leak, not a coincidence.
segments = st.text("QXZJKqxzjk78", min_size=5, max_size=8)
specials = st.text(URL_SPECIALS, min_size=1, max_size=3)


@st.composite
def passwords(draw: st.DrawFn) -> str:
    parts = draw(st.lists(segments, min_size=2, max_size=4))
    glue = [draw(specials) for _ in parts[1:]]
    return parts[0] + "".join(g + p for g, p in zip(glue, parts[1:], strict=True))


@st.composite
def database_urls(draw: st.DrawFn) -> tuple[str | None, str | None]:
    """(URL, its password): a closed local port, so a run fails fast without a server."""
    password = draw(passwords())
    form = draw(st.sampled_from(["postgresql", "mysql", "bare", "garbage", "query", "none"]))
    if form == "none":
        return None, None
    if form == "bare":
        return password, password
    if form == "garbage":
        return f"postgresql:/u:{password}@@", password
    if form == "query":
        return f"postgresql://127.0.0.1:9/db?user=u&password={password}", password
    return f"{form}://app:{password}@127.0.0.1:9/db", password


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=False, width=32),
    st.text(max_size=12),
    st.just("1.10"),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
keys = st.one_of(
    st.sampled_from(["V1__init.sql", "V2__more.sql", "../x.sql", "a/b.sql", "..", "V1 x.sql"]),
    st.text(min_size=0, max_size=20),
)
SPEC_FIELDS = ["tool", "target", "source", "database", "timeouts", "downgrade", "targt", "image"]


def base_documents(namespace: str = "default", engine: str = "sqlite") -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "files", "namespace": namespace},
            "data": {"V1__init.sql": GOOD_SQL},
        },
        {
            "apiVersion": "lockstep.dev/v1alpha1",
            "kind": "DatabaseMigration",
            "metadata": {"name": "shop", "namespace": "default"},
            "spec": {
                "tool": "sql",
                "source": {"configMapRef": {"name": "files"}},
                "target": "head",
                "database": {"engine": engine, "urlSecretRef": {"name": "db", "key": "url"}},
            },
        },
    ]


@st.composite
def hostile_documents(draw: st.DrawFn, engine: str) -> list[Any]:
    namespace = draw(st.sampled_from(["default", "default", "other"]))
    docs: list[Any] = base_documents(namespace, engine)
    config_map, migration = docs
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(st.integers(0, 7))
        if mutation == 0:
            migration["spec"][draw(st.sampled_from(SPEC_FIELDS))] = draw(json_values)
        elif mutation == 1:
            config_map["data"][draw(keys)] = draw(st.one_of(st.text(max_size=30), json_scalars))
        elif mutation == 2:
            encoded = base64.b64encode(draw(st.binary(max_size=30))).decode()
            config_map["binaryData"] = {draw(keys): draw(st.sampled_from([encoded, "%%%"]))}
        elif mutation == 3:
            migration[draw(st.sampled_from(["apiVersion", "kind"]))] = draw(json_scalars)
        elif mutation == 4:
            migration["metadata"][draw(st.sampled_from(["name", "namespace", "nme"]))] = draw(
                json_scalars
            )
        elif mutation == 5:
            engines = st.sampled_from(["postgresql", "mysql", "mariadb", "sqlite", "oracle", None])
            migration["spec"]["database"] = {
                **(d if isinstance(d := migration["spec"].get("database"), dict) else {}),
                "engine": draw(engines),
            }
        elif mutation == 6:
            migration["spec"]["timeouts"] = {
                "statementLockTimeout": draw(st.sampled_from(["0s", "5s", "1.5s", "2m", "x"]))
            }
        else:
            docs.append(draw(json_values))
    return docs


@st.composite
def files(draw: st.DrawFn, engine: str) -> tuple[str, bytes]:
    """(file name, content) in some encoding, sometimes with bytes that are no text at all."""
    name = draw(st.sampled_from(["migration.yaml", "m i g.yaml", "mïgration.yaml", "-x.yaml"]))
    text = yaml.safe_dump_all(draw(hostile_documents(engine)), allow_unicode=True)
    if draw(st.booleans()):
        text = text.replace("head", "héad")
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"]))
    content = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 9)) == 0:
        content += draw(st.binary(min_size=1, max_size=8))
    return name, content


def secret_pieces(password: str) -> list[str]:
    """The password and its pieces between URL delimiters (4 characters or more)."""
    pieces = [password, *re.split(r"[/@:#?%\s]+", password)]
    return [p for p in pieces if len(p) >= 4]
