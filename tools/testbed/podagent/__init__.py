"""The testbed pod agent: a stand-in kubelet (and scheduler) for e2e tests.

    PYTHONPATH=tools python -m testbed.podagent --kubeconfig K --state-dir D

It registers one Ready Node (``lockstep-node``, InternalIP 127.0.0.1) and
keeps its status and Lease fresh; binds every pending pod that has no
``spec.schedulingGates`` to it; runs each bound pod's containers as local
processes (see ``runtime``) and reports their status; finishes deleted pods
and then removes them with gracePeriodSeconds=0; and serves container logs to
the apiserver over HTTPS (see ``logs``). Images map to local programs
through ``images.yaml`` (see ``images``).

Differences from a real node, on purpose:
- Processes run as the agent's user (root here): ``runAsUser``, ``fsGroup``,
  capabilities, seccomp and ``readOnlyRootFilesystem`` are accepted and
  ignored. Each container gets private mount and UTS namespaces (volumes at
  their mountPath, hostname = pod name) but shares the host's network, PID
  space and file system.
- Pod IPs are loopback addresses (127.1.x.y), one per pod. Two pods can only
  listen on the same port if they bind their own ``status.podIP`` (e.g. an
  env var from fieldRef status.podIP); binding 0.0.0.0 clashes. There is no
  kube-proxy: Service cluster IPs do not route (the apiserver reaches
  webhooks through endpoints, ``--enable-aggregator-routing``).
- Container restarts back off from 1 s to 20 s (the kubelet: 10 s to 5 min).
- Logs are plain files, appended across restarts (``previous``,
  ``timestamps``, ``sinceSeconds`` ignored); no exec/attach/port-forward.
- After an agent restart, pods that had started are marked Failed with reason
  ``AgentRestarted`` (their leftover processes are killed): the agent does
  not re-attach to processes.
"""
