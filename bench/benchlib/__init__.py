"""Shared pieces of the Lockstep benchmarks (bench/run.py, its stages and helper processes).

* `bed`: a private test bed (the e2e control plane of `testbed.cluster`, the pod agent, the
  private PostgreSQL of `testbed.databases`) in a state directory of the bench's own, and the
  helper processes (floor client, stand-in kubelet) started from it;
* `kube`: identities (a ServiceAccount and a token kubeconfig for the operator and one for the
  floor client, so that the API server can tell their requests apart), namespaces, migrations;
* `apimeter`: requests per identity, verb and resource, from the API server's own metrics;
* `observer`: watch streams that note when each object reached each state (same clock, same
  client, for the operator and for the floor);
* `watching`: the helper processes' side: their list-and-watch loops and ready file;
* `common`: names, the log line, summaries, the machine, RSS and CPU seconds from /proc;
* `profiling`: py-spy sampling and its summaries; `table`: the printed table of the results.

The API requests go through `testbed.kubeapi` (tools/ is on PYTHONPATH, as the Makefile sets).
"""
