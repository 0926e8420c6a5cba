"""The ConfigMap ``<name>-progress``: the trainer's one writable object (the progress channel).

Created empty with the other children, so the trainer's Role can name it in ``resourceNames``
(RBAC cannot scope ``create`` by name) and the trainer only ever patches it. The label selects it
for the operator's watch, server-side.
"""

from __future__ import annotations

from typing import Any

from nsm.contract import PROGRESS_LABEL, PROGRESS_LABEL_VALUE, progress_configmap_name

from nsm_operator.builders.meta import child_metadata
from nsm_operator.resource import Training


def build_progress_configmap(training: Training) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(training, progress_configmap_name(training.name),
                                   **{PROGRESS_LABEL: PROGRESS_LABEL_VALUE}),  # fmt: skip
    }
