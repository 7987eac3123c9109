"""The pieces of the local control plane of `testbed.cluster`: where its state lives, its
credentials, its component processes and how to tell they are healthy."""
