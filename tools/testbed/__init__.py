"""Local test bed for Lockstep's e2e tests: a Kubernetes control plane built from source."""
