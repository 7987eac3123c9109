"""Kubernetes' own rules for names and ConfigMap keys, as pure checks.

Local mode reads objects from a YAML file nobody has validated (a pull request's, say) and turns
ConfigMap keys into file names and object names into a SQLite file name. The API server would
refuse a key such as ``../../home/u/.bashrc`` or ``/etc/passwd``; local mode must refuse it
too, before anything touches the disk. The rules are those of apimachinery's validation
(``IsConfigMapKey``, ``IsDNS1123Subdomain``, ``IsDNS1123Label``).
"""

from __future__ import annotations

import re
from typing import Final

CONFIG_MAP_KEY_MAX: Final = 253
DNS1123_SUBDOMAIN_MAX: Final = 253
DNS1123_LABEL_MAX: Final = 63

_CONFIG_MAP_KEY: Final = re.compile(r"[-._a-zA-Z0-9]+")
_DNS1123_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)


def config_map_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid ConfigMap key, or None when it is."""
    if not key:
        return "a key must not be empty"
    if len(key) > CONFIG_MAP_KEY_MAX:
        return f"a key must be no more than {CONFIG_MAP_KEY_MAX} characters"
    if not _CONFIG_MAP_KEY.fullmatch(key):
        return (
            "a key must consist of alphanumeric characters, '-', '_' or '.' "
            "(no '/', no spaces): Kubernetes refuses it and it cannot name a file"
        )
    if key in (".", "..") or key.startswith(".."):
        return "a key must not be '.' or '..' or start with '..'"
    return None


def subdomain_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS-1123 subdomain (most object names), or None when it is."""
    if not name:
        return "a name must not be empty"
    if len(name) > DNS1123_SUBDOMAIN_MAX:
        return f"a name must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
    if not _DNS1123_SUBDOMAIN.fullmatch(name):
        return (
            "a name must consist of lower case alphanumeric characters, '-' or '.', and "
            "start and end with an alphanumeric character"
        )
    return None


def label_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS-1123 label (namespace names), or None when it is."""
    if not name:
        return "a name must not be empty"
    if len(name) > DNS1123_LABEL_MAX:
        return f"a name must be no more than {DNS1123_LABEL_MAX} characters"
    if not _DNS1123_LABEL.fullmatch(name):
        return (
            "a name must consist of lower case alphanumeric characters or '-', and start "
            "and end with an alphanumeric character"
        )
    return None
