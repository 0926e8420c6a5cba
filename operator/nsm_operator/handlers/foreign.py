"""Objects that carry a training's labels but are not its own: warned about once, never used."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from nsm_operator.builders.names import LABEL_ATTEMPT, job_name
from nsm_operator.events import EventRecorder
from nsm_operator.ownership import describe_owner, owned_by
from nsm_operator.resource import Training

log = logging.getLogger(__name__)

# (training uid, kind, key) -> last message; a foreign object changing every few seconds posts one
# event, not one per change. Bounded LRU.
_POSTED: OrderedDict[tuple[str, str, str], str] = OrderedDict()
_POSTED_MAX = 4096


def warn_once(events: EventRecorder, body: Mapping[str, Any], uid: str, kind: str, key: str, reason: str,
              message: str, warning: bool = True) -> None:  # fmt: skip
    """Post ``message`` on ``body`` unless it was the last one posted for (uid, kind, key)."""
    slot = (uid, kind, key)
    if _POSTED.get(slot) == message:
        return
    _POSTED[slot] = message
    _POSTED.move_to_end(slot)
    while len(_POSTED) > _POSTED_MAX:
        _POSTED.popitem(last=False)
    log.warning("%s: %s", reason, message) if warning else log.info("%s: %s", reason, message)
    events.record(body, "Warning" if warning else "Normal", reason, message)


def foreign_job_event(events: EventRecorder, body: Mapping[str, Any], training: Training,
                      job: Mapping[str, Any]) -> bool:  # fmt: skip
    """True (and a Warning event) when ``job``, delivered by the Job watch for ``training``, is not
    one of its attempts: its name is not ``<name>-a<attempt>`` or its controller is not the training."""
    meta = job.get("metadata") or {}
    attempt = str((meta.get("labels") or {}).get(LABEL_ATTEMPT) or "")
    name = meta.get("name") or ""
    if attempt.isdigit() and name == job_name(training.name, int(attempt)) and owned_by(job, training.uid):
        return False
    warn_once(events, body, training.uid, "Job", str(meta.get("uid") or name), "ForeignJob",
              f"Job {name} carries this training's labels but is not one of its attempts "
              f"(controller: {describe_owner(job)}); it is ignored")  # fmt: skip
    return True
