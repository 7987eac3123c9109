"""Image mapping for the testbed pod agent: image name -> local program.

See ``images.yaml`` next to this file for the format.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_IMAGES_FILE = Path(__file__).with_name("images.yaml")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DOCKER_HUB_PREFIXES = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


class UnknownImageError(LookupError):
    """The image has no entry in the image mapping."""


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


def _expand(text: str, repo: Path) -> str:
    return text.replace("{repo}", str(repo))


def _profile(repository: str, entry: dict[str, Any], repo: Path) -> ImageProfile:
    path_dirs = [_expand(str(p), repo) for p in entry.get("path") or []]
    env = {str(k): _expand(str(v), repo) for k, v in (entry.get("env") or {}).items()}
    env.setdefault("PATH", ":".join([*path_dirs, DEFAULT_PATH]))
    return ImageProfile(
        repository=repository,
        entrypoint=tuple(_expand(str(a), repo) for a in entry.get("entrypoint") or []),
        cmd=tuple(_expand(str(a), repo) for a in entry.get("cmd") or []),
        env=env,
        working_dir=_expand(str(entry.get("workingDir") or "/"), repo),
    )


class ImageCatalog:
    """The parsed image mapping."""

    def __init__(self, entries: dict[str, dict[str, Any]], source: Path, repo: Path) -> None:
        self.source = source
        self._entries = {image_repository(key): value or {} for key, value in entries.items()}
        self._repo = repo

    @classmethod
    def load(cls, path: Path = DEFAULT_IMAGES_FILE, repo: Path = REPO_ROOT) -> ImageCatalog:
        data = yaml.safe_load(path.read_text()) or {}
        return cls(data.get("images") or {}, path, repo)

    def resolve(self, image: str) -> ImageProfile:
        repository = image_repository(image)
        entry = self._entries.get(repository)
        if entry is None:
            entry = next(
                (v for k, v in self._entries.items() if fnmatch.fnmatchcase(repository, k)),
                None,
            )
        if entry is None:
            known = ", ".join(sorted(self._entries))
            raise UnknownImageError(
                f'image "{image}" (repository "{repository}") is not in {self.source}; '
                f"the testbed pod agent only runs mapped images ({known})"
            )
        return _profile(repository, entry, self._repo)
