"""`lockstep wait`: the rollout gate as an init container, where webhooks are not allowed."""

from __future__ import annotations

import sys
import time

from lockstep import gate, kube


def wait_for_migration(
    name: str,
    image: str | None,
    namespace: str | None,
    timeout: float,
    interval: float,
    kubeconfig: str | None,
) -> int:
    """0 once the database is migrated for `image` (or the migration is Ready); 1 on timeout;
    2 when there is no API server configuration to use."""
    try:
        kube.load_config(kubeconfig)
    except kube.NoClusterConfig as error:
        print(f"lockstep wait: error: {error}", file=sys.stderr, flush=True)
        return 2
    namespace = namespace or kube.default_namespace()
    pod = {"spec": {"containers": [{"name": "app", "image": image}]}}
    deadline = time.monotonic() + timeout if timeout > 0 else None
    last = ""
    while True:
        try:
            verdict = gate.decide(pod, kube.get_migration(namespace, name), name)
        except kube.NotFoundError:
            verdict = gate.decide(pod, None, name)
        except kube.KubeError as error:  # e.g. RBAC: say so and keep trying
            verdict = gate.Verdict(
                True, "Unknown", f"cannot read DatabaseMigration {name}: {error}"
            )
        if not verdict.gate:
            print(f"lockstep wait: {verdict.message}", flush=True)
            return 0
        verdict_message = verdict.message
        if verdict_message != last:
            print(f"lockstep wait: {verdict_message}", flush=True)
            last = verdict_message
        if deadline is not None and time.monotonic() > deadline:
            print(f"lockstep wait: gave up after {timeout:.0f}s", file=sys.stderr, flush=True)
            return 1
        time.sleep(interval)
