"""The `lockstep` command line and its commands."""
