"""The `kubectl lockstep` plugin: status, describe, approve, retry, rollback and logs.

`commands` parses arguments and runs the verbs, `state` reads facts from the objects, `render`
turns them into text, `client` is the only module here that talks to the Kubernetes API, and
`errors` holds the one-line failures a person can act on.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from lockstep.plugin import commands

    return commands.main(argv)


def run() -> None:
    """``kubectl-lockstep``: the plugin's own entry point (its light distribution has no CLI)."""
    sys.exit(main(sys.argv[1:]))
