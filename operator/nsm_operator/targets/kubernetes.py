"""The Kubernetes target: one Job per attempt, followed through Job watch events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from nsm.contract import is_retryable, parse_time

from nsm_operator.builders import build_configmap, build_job, child_builders
from nsm_operator.builders.names import CONTAINER_NAME, LABEL_ATTEMPT, LABEL_TRAINING, job_name
from nsm_operator.diagnosis import PREVIOUS_ATTEMPT
from nsm_operator.errors import TransientError
from nsm_operator.lifecycle import Observation, State
from nsm_operator.ownership import describe_owner, owned_by
from nsm_operator.targets.base import TargetContext
from nsm_operator.targets.children import child_exists, ensure_child

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
_FIRST = ("ServiceAccount", "Service")
log = logging.getLogger(__name__)


def _true_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = (job.get("status") or {}).get("conditions") or []
    return {c.get("type", ""): c for c in conditions if c.get("status") == "True"}


def _terminated(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The trainer container's terminated state in the newest pod that has one; among pods
    created together (the M pods of an Indexed Job) the one that ended first: the others were
    stopped because of it (SIGTERM from the Job controller, or a failed collective)."""
    found = []
    for pod in pods:
        created = (pod.get("metadata") or {}).get("creationTimestamp") or ""
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if cs.get("name") == CONTAINER_NAME and term:
                found.append((created, term.get("finishedAt") or "", term))
    if not found:
        return None
    newest = max(f[0] for f in found)
    return min((f for f in found if f[0] == newest), key=lambda f: f[1])[2]


def observe_job(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] = ()) -> Observation:
    """Translate a Job (and, for a failed one, its pods) into a lifecycle observation."""
    if job is None:
        return Observation(State.absent)
    status = job.get("status") or {}
    created = parse_time((job.get("metadata") or {}).get("creationTimestamp"))
    started = parse_time(status.get("startTime"))
    conds = _true_conditions(job)
    if "Complete" in conds:
        finished = parse_time(status.get("completionTime")) or parse_time(conds["Complete"].get("lastTransitionTime"))
        return Observation(State.succeeded, exit_code=0, started_at=started, finished_at=finished, created_at=created)
    failed = conds.get("Failed") or conds.get("FailureTarget")
    if failed is not None:
        reason = failed.get("reason") or "Failed"
        message = failed.get("message") or ""
        term = _terminated(pods)
        exit_code = term.get("exitCode") if term else None
        if term and reason == "BackoffLimitExceeded":
            reason = term.get("reason") or reason  # e.g. Error, OOMKilled
        if term and term.get("message"):
            message = f"{message}; {term['message']}" if message else term["message"]
        retryable = failed.get("reason") != "PodFailurePolicy" and is_retryable(exit_code)
        return Observation(
            State.failed, exit_code=exit_code, reason=reason, message=message or None, retryable=retryable,
            started_at=started, finished_at=parse_time(failed.get("lastTransitionTime")), created_at=created,
        )  # fmt: skip
    if (job.get("spec") or {}).get("suspend") and not status.get("active"):
        return Observation(State.queued, created_at=created)
    # Running once every pod is: a multi-node attempt whose pod waits (Pending, image pull) stays
    # pending, so the pod watch says why and startupTimeoutSeconds still ends it.
    if (status.get("ready") or 0) >= max(1, (job.get("spec") or {}).get("parallelism") or 1):
        return Observation(State.running, started_at=started, created_at=created)
    # started_at of a pending attempt: when the Job controller started it (startupTimeoutSeconds).
    return Observation(State.pending, started_at=started, created_at=created)


def observed_part(job: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What :func:`observe_job` and the ownership checks read of ``job``: kept for the rest of a
    launch (under a burst, many seconds behind the low-priority children), and of every Job
    event the watch queues, instead of the whole decoded Job."""
    if job is None:
        return None
    meta = job.get("metadata") or {}
    keep = ("name", "namespace", "uid", "labels", "creationTimestamp", "ownerReferences")
    return {"metadata": {k: meta[k] for k in keep if k in meta},
            "spec": {k: v for k, v in (job.get("spec") or {}).items() if k in ("suspend", "parallelism")},
            "status": job.get("status") or {}}  # fmt: skip


def foreign_job(job: Mapping[str, Any]) -> Observation:
    """The attempt's Job name is held by a Job this training does not control: final failure."""
    meta = job.get("metadata") or {}
    return Observation(State.failed, reason="ForeignObject", retryable=False,
                       message=f"Job {meta.get('name')} is not this training's (controller: {describe_owner(job)}); "
                               "delete or rename it, then re-apply the training")  # fmt: skip


def job_attempt(job: Mapping[str, Any]) -> int | None:
    value = ((job.get("metadata") or {}).get("labels") or {}).get(LABEL_ATTEMPT)
    return int(value) if value and value.isdigit() else None


class KubernetesTarget:
    """Attempts as batch/v1 Jobs named ``<training>-a<attempt>``."""

    name = "kubernetes"
    polling = False

    async def launch(self, ctx: TargetContext, attempt: int) -> dict[str, Any]:
        training = ctx.training
        blocking = await self.earlier_pods(ctx, attempt)
        if blocking:
            # One writer per checkpoint: the PVC is ReadWriteOnce(Pod), but two pods on one node
            # could both mount a ReadWriteOnce claim and both write last.pt.
            names = ", ".join(sorted(blocking)[:3]) + (" …" if len(blocking) > 3 else "")
            return {"activeJob": None, "reason": PREVIOUS_ATTEMPT,
                    "message": f"attempt {attempt} waits for pod {names} of an earlier attempt to terminate"}  # fmt: skip

        # Pod admission needs the ServiceAccount, so it goes first (with a multi-node training's
        # Service: its pods look each other up as soon as they start), then the Job; a later
        # attempt's pod reads the spec ConfigMap, rewritten first (spec changes apply from the
        # next attempt). The PVC, ConfigMaps and RBAC, which the pod needs only later (the
        # scheduler waits for the claim, the kubelet for the ConfigMap), are finish_launch's:
        # under a burst they queue behind other trainings' Jobs (bench/operator_latency.py), and
        # the training's lock (its Job and pod events) need not wait for them. These requests are
        # urgent: a user waits for the Job, so they pass status writes and reads (admission.py).
        again = int(ctx.status.get("attempts") or 0) >= 1
        firsts = [build() for kind, build in child_builders(training, ctx.settings.checkpoint_access_mode)
                  if kind in _FIRST or (again and getattr(build, "func", None) is build_configmap)]  # fmt: skip
        with ctx.kube.urgent():
            await asyncio.gather(*(ensure_child(ctx.kube, training, c, decode=False) for c in firsts if c is not None))
            job = build_job(training, attempt, ctx.settings)
            ctx.launched = observed_part(await ensure_child(ctx.kube, training, job))
        ctx.created()
        ctx.unfinished = attempt
        await self.prune(ctx, attempt)
        return {"activeJob": job["metadata"]["name"]}

    async def finish_launch(self, ctx: TargetContext, resumed: bool = False) -> None:
        """The children the attempt's pod needs later, one at a time in creation order, each built
        when a low-priority slot is free (a thousand waiting launches hold no manifests), so that
        the last one existing means all did: a resumed launch looks for that one first. A resumed
        launch leaves an existing spec ConfigMap as it is (spec changes apply from the next
        attempt; this one may have read it already)."""
        training = ctx.training
        later = [build for kind, build in child_builders(training, ctx.settings.checkpoint_access_mode)
                 if kind not in _FIRST]  # fmt: skip
        if resumed and later:
            last = later[-1]()
            if last is not None and await child_exists(ctx.kube, training, last):
                return
        for build in later:
            async with ctx.kube.low_priority():
                child = build()
                if child is not None:
                    await ensure_child(ctx.kube, training, child, decode=False, rewrite=not resumed)

    async def prune(self, ctx: TargetContext, attempt: int) -> None:
        """Delete the Jobs of attempts older than the newest ``job_history_limit`` before
        ``attempt`` (their pods go with them). Best effort: the next attempt tries again."""
        oldest_kept = attempt - ctx.settings.job_history_limit
        if oldest_kept <= 1:
            return  # nothing older than attempt 1: no need to list
        training = ctx.training
        try:
            jobs = await ctx.kube.list("Job", training.namespace, f"{LABEL_TRAINING}={training.name}")
            for old in jobs:
                number = job_attempt(old)
                # Only this training's own attempts: labels alone prove nothing (issue #11).
                if number is not None and number < oldest_kept and owned_by(old, training.uid):
                    await ctx.kube.delete("Job", training.namespace, old["metadata"]["name"])
        except TransientError as exc:
            log.warning("%s/%s: pruning old attempt Jobs: %s", training.namespace, training.name, exc)

    async def earlier_pods(self, ctx: TargetContext, attempt: int) -> list[str]:
        """Pods of this training that may still write its checkpoint and are not attempt
        ``attempt``'s own: any unfinished pod of another attempt or being deleted, and, when
        attempt ``attempt`` is started again (its Job is gone: deleted by a person), its own
        unfinished pods too. A first start lists nothing (no pod can exist yet)."""
        current = int(ctx.status.get("attempts") or 0)
        if current == 0:
            return []
        pods = await ctx.kube.list("Pod", ctx.training.namespace, f"{LABEL_TRAINING}={ctx.training.name}")
        again = attempt == current
        return [
            p["metadata"]["name"] for p in pods
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and (again or p["metadata"].get("deletionTimestamp")
                 or (p["metadata"].get("labels") or {}).get(LABEL_ATTEMPT) != str(attempt))
        ]  # fmt: skip

    async def fetch(self, ctx: TargetContext, attempt: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        name = job_name(ctx.training.name, attempt)
        job = await ctx.kube.get("Job", ctx.training.namespace, name)
        return job, await self.pods_if_failed(ctx, job)

    async def pods_if_failed(self, ctx: TargetContext, job: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        if job is None or not ({"Failed", "FailureTarget"} & set(_true_conditions(job))):
            return []
        name = job["metadata"]["name"]
        return await ctx.kube.list("Pod", ctx.training.namespace, f"{JOB_NAME_LABEL}={name}")

    async def observe(self, ctx: TargetContext) -> Observation:
        attempt = int(ctx.status.get("attempts") or 0)
        if attempt < 1:
            return Observation(State.absent)
        job, pods = await self.fetch(ctx, attempt)
        if job is not None and not owned_by(job, ctx.training.uid):
            return foreign_job(job)
        return observe_job(job, pods)

    async def observe_event(self, ctx: TargetContext, event: Mapping[str, Any]) -> Observation | None:
        """A Job watch event of the current attempt (its failed pods are listed, nothing else read)."""
        if job_attempt(event) != int(ctx.status.get("attempts") or 0):
            return None
        return observe_job(event, await self.pods_if_failed(ctx, event))

    async def stop(self, ctx: TargetContext) -> None:
        attempt = int(ctx.status.get("attempts") or 0)
        if attempt >= 1:
            await ctx.kube.delete("Job", ctx.training.namespace, job_name(ctx.training.name, attempt))

    async def delete(self, ctx: TargetContext) -> str | None:
        """Owner references cascade to the Job; deleting it now only saves waiting for the GC."""
        await self.stop(ctx)
        return None

    def finished_fields(self, ctx: TargetContext) -> dict[str, Any]:
        return {}  # an ended Job needs no bookkeeping: it is garbage-collected with the training
