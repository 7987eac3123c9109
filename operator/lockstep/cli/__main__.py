"""`python -m lockstep.cli`: the same entry point as the `lockstep` command."""

from lockstep.cli import main

raise SystemExit(main.main())
