"""The headless Service that gives a multi-node training's pods stable DNS names.

An Indexed Job's pod ``i`` gets the hostname ``<job>-<i>``; with ``subdomain`` set to this
Service, the namespace's DNS serves ``<job>-<i>.<service>`` for it, so every pod can reach pod 0,
the rendezvous (``MASTER_ADDR``), before anything is Ready: ``publishNotReadyAddresses``, because
a trainer pod has no readiness probe and the rendezvous happens while the pods start.
"""

from __future__ import annotations

from typing import Any

from nsm.contract import RENDEZVOUS_PORT

from nsm_operator.builders.meta import child_metadata
from nsm_operator.builders.names import LABEL_NAME, LABEL_TRAINING, TRAINER_APP, rendezvous_service_name
from nsm_operator.resource import Training

RENDEZVOUS_PORT_NAME = "rendezvous"


def pod_selector(training: Training) -> dict[str, str]:
    """Labels every trainer pod of ``training`` carries (the Job's pod template sets them)."""
    return {LABEL_NAME: TRAINER_APP, LABEL_TRAINING: training.name}


def build_rendezvous_service(training: Training) -> dict[str, Any] | None:
    """The training's headless Service, or None with one node (nothing to rendezvous with)."""
    if training.spec.resources.nodes <= 1:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(training, rendezvous_service_name(training.name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": pod_selector(training),
            "ports": [{"name": RENDEZVOUS_PORT_NAME, "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT,
                       "protocol": "TCP"}],
        },
    }  # fmt: skip
