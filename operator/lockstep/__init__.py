"""Lockstep: database schema migrations, run the GitOps way on Kubernetes."""

__version__ = "0.1.0"
