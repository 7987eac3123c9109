"""Reading a local-mode YAML file as `kubectl apply -f` reads it, with errors a person can act on.

A file from a pull request may be anything: another encoding, broken YAML, a list where an object
belongs. Each becomes one :class:`UnreadableFileError` line (what, where, what to do), never a
traceback. Scalars are read as kubectl's YAML-to-JSON conversion reads them: an unquoted date stays
a string, as it does in a cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class UnreadableFileError(ValueError):
    """The file cannot be read as Kubernetes objects; the message says where and what to do."""


# libyaml's parser where PyYAML was built with it (the wheels are): the pure-Python one took
# 80 times as long, seconds for a megabyte-sized ConfigMap (issue 21). The constructor and the
# resolver stay PyYAML's own, so both read the same objects.
SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _KubectlLoader(SafeLoader):  # type: ignore[valid-type,misc]  # chosen at import
    """PyYAML's safe loader without the timestamp type, which JSON (and so kubectl) lacks."""


_KubectlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_objects(path: Path) -> list[dict[str, Any]]:
    """The objects of the YAML stream at ``path`` (empty documents skipped)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise UnreadableFileError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UnreadableFileError(
            f"{path}: line {line}: byte 0x{raw[error.start]:02x} is not UTF-8; "
            "save the file as UTF-8 (Kubernetes reads YAML only as UTF-8)"
        ) from None
    try:
        documents = list(yaml.load_all(text, Loader=_KubectlLoader))
    except yaml.YAMLError as error:
        raise UnreadableFileError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
    except (ValueError, TypeError, RecursionError) as error:
        # PyYAML's constructors raise these for a few hostile inputs (huge or unhashable keys).
        raise UnreadableFileError(f"{path}: not valid YAML: {type(error).__name__}") from None
    objects: list[dict[str, Any]] = []
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise UnreadableFileError(
                f"{path}: document {number} is a {type(document).__name__}, not an object: "
                "each document must be one Kubernetes object (apiVersion, kind, metadata, ...)"
            )
        objects.append(document)
    return objects


def _yaml_problem(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
