"""Image mapping for the testbed pod agent: image name -> local program.

See ``images.yaml`` next to this file for the format.

Besides its own ``images:``, ``images.yaml`` may ``include:`` more mapping
files by glob (``{repo}/examples/*/image.yaml``).  An included file describes
the image of the folder it lives in: it maps exactly one repository,
``<prefix>/<folder>`` (the include's ``prefix``, ``lockstep-examples`` for the
examples), and may use the placeholder ``{example}`` for that folder.  Every
file may use ``{repo}`` (the repository root) and ``{toolchains}`` (the cache
that ``tools/toolchains/install.sh`` fills:
``${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/toolchains``, the same rule as the
script).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_IMAGES_FILE = Path(__file__).resolve().parents[1] / "images.yaml"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
log = logging.getLogger("testbed.podimages")
_DOCKER_HUB_PREFIXES = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


class UnknownImageError(LookupError):
    """The image has no entry in the image mapping."""


class ImageMappingError(ValueError):
    """An image mapping file is malformed (the message names the file)."""


@dataclass(frozen=True)
class ImageProfile:
    """What a container of this image runs and with which defaults."""

    repository: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/"

    @property
    def image_id(self) -> str:
        digest = hashlib.sha256(self.repository.encode()).hexdigest()
        return f"{self.repository}@sha256:{digest}"

    def argv(self, command: list[str] | None, args: list[str] | None) -> list[str]:
        """The process argv, following the ENTRYPOINT/CMD rules of container runtimes."""
        if command:
            return [*command, *(args or [])]
        if args:
            return [*self.entrypoint, *args]
        return [*self.entrypoint, *self.cmd]


@dataclass(frozen=True)
class _Entry:
    """One mapping entry with the placeholder values of the file it came from."""

    fields: Mapping[str, Any]
    placeholders: Mapping[str, str]


def image_repository(image: str) -> str:
    """``docker.io/library/busybox:1.36@sha256:..`` -> ``busybox``."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name = name[:colon]
    for prefix in _DOCKER_HUB_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name.removeprefix("library/")


def toolchains_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``tools/toolchains/install.sh`` installs (its ``--print-root``).

    ``${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}/toolchains``: an empty
    ``LOCKSTEP_CACHE`` counts as unset, as in the script.
    """
    env = os.environ if environ is None else environ
    cache = env.get("LOCKSTEP_CACHE") or str(
        Path(env.get("HOME") or Path.home()) / ".cache" / "lockstep"
    )
    return Path(cache) / "toolchains"


def _expand(text: str, placeholders: Mapping[str, str]) -> str:
    for name, value in placeholders.items():
        text = text.replace("{" + name + "}", value)
    return text


def _profile(repository: str, entry: _Entry) -> ImageProfile:
    fields, values = entry.fields, entry.placeholders
    path_dirs = [_expand(str(p), values) for p in fields.get("path") or []]
    env = {str(k): _expand(str(v), values) for k, v in (fields.get("env") or {}).items()}
    env.setdefault("PATH", ":".join([*path_dirs, DEFAULT_PATH]))
    return ImageProfile(
        repository=repository,
        entrypoint=tuple(_expand(str(a), values) for a in fields.get("entrypoint") or []),
        cmd=tuple(_expand(str(a), values) for a in fields.get("cmd") or []),
        env=env,
        working_dir=_expand(str(fields.get("workingDir") or "/"), values),
    )


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ImageMappingError(f"cannot read image mapping {path}: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("images") or {}, dict):
        raise ImageMappingError(f"{path}: expected a mapping with an `images:` mapping")
    return data


@dataclass(frozen=True)
class _Loaded:
    """One reading of the mapping: its entries and the files it was read from."""

    entries: dict[str, _Entry]
    globs: tuple[Path, ...]
    fingerprint: tuple[tuple[str, int], ...]


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def _glob(pattern: Path) -> list[Path]:
    anchor = Path(pattern.anchor)
    return sorted(anchor.glob(str(pattern.relative_to(anchor))))


def _fingerprint(source: Path, globs: tuple[Path, ...]) -> tuple[tuple[str, int], ...]:
    """What a change of the mapping would change: the files, their set and their mtimes."""
    files = [source, *(f for pattern in globs for f in _glob(pattern))]
    return tuple((str(f), _mtime(f)) for f in files)


def _load(source: Path, repo: Path, toolchains: Path) -> _Loaded:
    data = _read_mapping(source)
    common = {"repo": str(repo), "toolchains": str(toolchains)}
    entries = {
        image_repository(str(key)): _Entry(value or {}, common)
        for key, value in (data.get("images") or {}).items()
    }
    globs: list[Path] = []
    for include in data.get("include") or []:
        pattern, prefix = _include_pattern(include, source, repo)
        globs.append(pattern)
        for file in _glob(pattern):
            repository, fields = _included_image(file, prefix)
            if repository in entries:
                raise ImageMappingError(
                    f"image {repository!r} of {file} is already mapped "
                    f"(in {source} or another included file)"
                )
            entries[repository] = _Entry(fields, {**common, "example": str(file.parent)})
    return _Loaded(entries, tuple(globs), _fingerprint(source, tuple(globs)))


def _include_pattern(include: Any, source: Path, repo: Path) -> tuple[Path, str]:
    """One ``include:`` item as (absolute glob, image prefix)."""
    if not isinstance(include, dict) or "glob" not in include or "prefix" not in include:
        raise ImageMappingError(
            f"{source}: each include needs `glob` and `prefix`, got {include!r}"
        )
    pattern = Path(_expand(str(include["glob"]), {"repo": str(repo)}))
    if not pattern.is_absolute():
        pattern = source.parent / pattern
    return pattern, str(include["prefix"]).rstrip("/")


def _included_image(file: Path, prefix: str) -> tuple[str, dict[str, Any]]:
    """The one image an included file maps: ``<prefix>/<its folder's name>``."""
    expected = f"{prefix}/{file.parent.name}"
    images = _read_mapping(file).get("images") or {}
    keys = [image_repository(str(k)) for k in images]
    if keys != [expected]:
        raise ImageMappingError(
            f"{file} must map exactly one image, {expected!r} (its folder's name), not {keys!r}"
        )
    fields = next(iter(images.values())) or {}
    if not isinstance(fields, dict):
        raise ImageMappingError(f"{file}: the entry of {expected!r} must be a mapping")
    return expected, fields


class ImageCatalog:
    """The parsed image mapping: the main file plus the files it includes.

    The agent lives longer than a test session (``make demo`` starts one that
    the tests reuse), so the catalog re-reads the files whenever one of them
    (or the set an include glob matches) changed since the last look: a new
    example is runnable without restarting the agent. A reload that fails
    keeps the previous mapping and says why in the next "unknown image" error.
    """

    def __init__(
        self,
        source: Path = DEFAULT_IMAGES_FILE,
        repo: Path = REPO_ROOT,
        toolchains: Path | None = None,
    ) -> None:
        self.source = source
        self._repo = repo
        self._toolchains = toolchains or toolchains_root()
        self._lock = threading.Lock()
        self._loaded = _load(source, repo, self._toolchains)
        self._reload_error: str | None = None

    @classmethod
    def load(
        cls,
        path: Path = DEFAULT_IMAGES_FILE,
        repo: Path = REPO_ROOT,
        toolchains: Path | None = None,
    ) -> ImageCatalog:
        return cls(path, repo, toolchains)

    @property
    def toolchains(self) -> Path:
        return self._toolchains

    def repositories(self) -> list[str]:
        """Every mapped repository (and glob), sorted."""
        return sorted(self._current().entries)

    def resolve(self, image: str) -> ImageProfile:
        entries = self._current().entries
        repository = image_repository(image)
        entry = entries.get(repository)
        if entry is None:
            entry = next(
                (v for k, v in entries.items() if fnmatch.fnmatchcase(repository, k)),
                None,
            )
        if entry is None:
            known = ", ".join(sorted(entries))
            stale = (
                f"; the mapping did not reload: {self._reload_error}" if self._reload_error else ""
            )
            raise UnknownImageError(
                f'image "{image}" (repository "{repository}") is not in {self.source}; '
                f"the testbed pod agent only runs mapped images ({known}){stale}"
            )
        return _profile(repository, entry)

    def _current(self) -> _Loaded:
        with self._lock:
            loaded = self._loaded
            if _fingerprint(self.source, loaded.globs) == loaded.fingerprint:
                return loaded
            try:
                self._loaded = _load(self.source, self._repo, self._toolchains)
                self._reload_error = None
                log.info("image mapping reloaded from %s", self.source)
            except ImageMappingError as error:
                # Keep serving the last good mapping; remember the files so as not to retry
                # (and log) on every pod until they change again.
                self._reload_error = str(error)
                self._loaded = _Loaded(
                    loaded.entries, loaded.globs, _fingerprint(self.source, loaded.globs)
                )
                log.warning("image mapping not reloaded: %s", error)
            return self._loaded
