"""The test bed's real node: kubelet, containerd, runc, a CNI bridge, kube-proxy and
kube-scheduler registered to the local control plane (``LOCKSTEP_E2E_NODE=kubelet``), instead of
the pod agent's host processes (``testbed.podagent``, the fast mode)."""
