"""Start the Kopf operator with Lockstep's handlers (the `lockstep operator` command)."""

from __future__ import annotations

import asyncio
import os

import kopf

from lockstep import kube


def run(
    namespaces: list[str], kubeconfig: str | None, runner_image: str, liveness: str | None
) -> int:
    if kubeconfig:
        # Kopf logs in through the kubernetes client, which reads $KUBECONFIG.
        os.environ["KUBECONFIG"] = kubeconfig
    kube.load_config(kubeconfig)

    from lockstep import handlers  # registers the handlers with Kopf

    handlers.reconciler.runner_image = runner_image
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=liveness,
        )
    )
    return 0
