"""All kopf registration (STYLE 2): ``kopf run -m nsm_operator.main`` or ``nsm-operator``.

Handler bodies live in ``nsm_operator.handlers``; this module only wires them to kopf and
applies the settings object at startup.
"""

from __future__ import annotations

import asyncio.sslproto
import gc
import logging
from typing import Any

import kopf

from nsm.contract import PROGRESS_LABEL, PROGRESS_LABEL_VALUE
from nsm.crd import CRD_NAME
from nsm.spec import API_GROUP, API_VERSION, PLURAL

from nsm_operator import watches
from nsm_operator.builders.names import LABEL_NAME, LABEL_TRAINING, TRAINER_APP
from nsm_operator.diffbase import FIELD, StatusDiffBaseStorage, crd_keeps_the_record
from nsm_operator.errors import TransientError
from nsm_operator.handlers import jobs, pods, progress, resync, training
from nsm_operator.handlers.context import OperatorContext
from nsm_operator.kube import ApiError, Kube, connection_info
from nsm_operator.lifecycle import TERMINAL
from nsm_operator.metrics import OperatorMetrics
from nsm_operator.settings import OperatorSettings
from nsm_operator.targets.kubernetes import observed_part

TRAININGS = (API_GROUP, API_VERSION, PLURAL)


def own_watches(ctx: OperatorContext) -> list[watches.ChildWatch]:
    """What the operator watches outside kopf (nsm_operator/watches.py): the trainings' every
    event (metrics, the body cache, summaries) and its own children, which the API server filters
    by label, so only trainer Jobs/pods and progress ConfigMaps arrive.

    kopf keeps the trainings' change handlers (create/resume, spec updates, the Modal finalizer),
    which need its diff base and retries; kopf's invocation of an ``on.event`` handler there cost
    ten times the handler's own work (≈ 5 % of the operator's CPU under a burst:
    docs/performance.md), for something a plain watch delivers."""
    return [
        watches.child_watch("NSMTraining", "", lambda event, body: training.on_training_event(ctx, event, body)),
        # Each event is cut to what its handler reads before it is queued (bounded memory).
        watches.child_watch("Job", f"{LABEL_NAME}={TRAINER_APP}",
                            lambda event, body: jobs.on_job_event(ctx, event, body), keep=observed_part),
        # Trainer pods only (why an attempt waits).
        watches.child_watch("Pod", f"{LABEL_NAME}={TRAINER_APP},{LABEL_TRAINING}",
                            lambda event, body: pods.on_pod_event(ctx, event, body), keep=pods.pod_view),
        # Only the trainers' progress ConfigMaps, never every ConfigMap of the cluster.
        watches.child_watch("ConfigMap", f"{PROGRESS_LABEL}={PROGRESS_LABEL_VALUE}",
                            lambda event, body: progress.on_progress_event(ctx, event, body)),
    ]  # fmt: skip


def configure_kopf(settings: kopf.OperatorSettings, cfg: OperatorSettings) -> None:
    """kopf's own settings: storage, timeouts, no event posting (the children's watches are ours)."""
    # Handler progress lives in annotations (kopf.zalando.org/*): the status holds only the
    # fields documented in the CRD.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
    # The diff base is kept in status.lastHandledConfiguration, which the handler's own status
    # write records: no PATCH of kopf's after a handling (nsm_operator.diffbase). Built without
    # deep-copying the status and managedFields of every event first.
    settings.persistence.diffbase_storage = StatusDiffBaseStorage()
    settings.watching.server_timeout = cfg.watch_timeout_seconds
    settings.watching.client_timeout = cfg.watch_timeout_seconds + 30
    settings.networking.request_timeout = cfg.request_timeout_seconds
    # The operator posts its Events itself (nsm_operator/events.py: one connection pool, bounded,
    # deduplicated). kopf would post only its loggers' handler chatter, which stays off, so its
    # poster is switched off too: nothing reaches it (a kopf.info call would be a silent no-op).
    settings.posting.level = logging.INFO
    settings.posting.loggers = False
    settings.posting.enabled = False
    settings.peering.standalone = True


def tune_gc(threshold: int) -> None:
    """Freeze what start-up made (modules, kopf's registry: never garbage) and raise the
    generation-0 threshold. kopf's per-event views form reference cycles, so with CPython's
    default (700) full collections of the whole heap stall the loop under a burst
    (docs/performance.md, "Levers")."""
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)


def tune_tls_reads(size: int) -> None:
    """Read ``size`` bytes at a time from TLS connections (asyncio's SSLProtocol reads 256 KiB:
    one such allocation per read, shrunk to what arrived, and a 256 KiB buffer per connection,
    under a burst a fragmented heap; docs/performance.md). Applies to every connection, kopf's
    included, from its next read."""
    if size > 0 and isinstance(getattr(asyncio.sslproto.SSLProtocol, "max_size", None), int):
        asyncio.sslproto.SSLProtocol.max_size = size


async def record_in_status(kube: Kube, logger: logging.Logger) -> bool:
    """Whether the installed CRD keeps ``status.lastHandledConfiguration`` (one LIST by name: the
    operator may list CRDs, not get them). Unknown counts as no: kopf's annotation then, which
    costs a PATCH per handling but never a lost record."""
    try:
        found = await kube.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                   params={"fieldSelector": f"metadata.name={CRD_NAME}"})  # fmt: skip
    except (ApiError, TransientError) as exc:
        logger.warning("cannot read the NSMTraining CRD (%s): kopf's diff base stays in its annotation", exc)
        return False
    crd = next((c for c in (found or {}).get("items") or [] if c.get("metadata", {}).get("name") == CRD_NAME), None)
    if crd_keeps_the_record(crd, API_VERSION):
        return True
    logger.warning("the installed NSMTraining CRD has no status.%s (older than this operator): kopf's diff base "
                   "stays in its annotation until the CRD is upgraded (helm upgrade, or `make crd` and apply)", FIELD)
    return False


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """The same credentials for kopf and for the operator's own client (nsm_operator.kube)."""
    return connection_info(settings)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    cfg = OperatorSettings.from_env()
    configure_kopf(settings, cfg)
    tune_gc(cfg.gc_threshold)
    tune_tls_reads(cfg.tls_read_bytes)
    kube = Kube(connection_info(settings), request_timeout=cfg.request_timeout_seconds)
    metrics = OperatorMetrics()
    metrics.describe_admission(kube.admission.snapshot)
    metrics.serve(cfg.metrics_port, cfg.metrics_address)
    memo.nsm = OperatorContext(settings=cfg, kube=kube, metrics=metrics)
    # The diff base's store asks whether the handler's status write already recorded it; an
    # installed CRD without the record's field keeps kopf's annotation instead (diffbase.py).
    storage = settings.persistence.diffbase_storage
    if isinstance(storage, StatusDiffBaseStorage):
        storage.recorded = memo.nsm.take_recorded
        storage.in_status = memo.nsm.record_handled = await record_in_status(kube, logger)
        memo.nsm.essence = storage.encoded
    memo.nsm.events.start()
    memo.nsm.spawn(resync.resync_forever(memo.nsm))
    # The trainings' and the children's watches, over the namespaces kopf serves (nsm-operator's
    # --namespace / --all-namespaces reach NSM_OPERATOR_NAMESPACES). Their handlers post Events
    # through the operator's own recorder, so they need nothing of kopf's per-event context.
    ctx = memo.nsm
    memo.watchers = watches.start(ctx.kube, own_watches(ctx), cfg.namespaces, ctx.metrics, ctx.spawn,
                                  cfg.watch_timeout_seconds)  # fmt: skip
    logger.info("nsm-operator started: namespaces=%s metrics %s:%s", cfg.namespaces or "all", cfg.metrics_address,
                cfg.metrics_port)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "nsm", None) is not None:
        await memo.nsm.shutdown()


def _ctx(memo: kopf.Memo) -> OperatorContext:
    return memo.nsm  # type: ignore[no-any-return]


@kopf.on.resume(*TRAININGS)
@kopf.on.create(*TRAININGS)
async def create(body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    await training.on_create_or_resume(_ctx(memo), body, namespace, name)


@kopf.on.update(*TRAININGS, field="spec")
async def update(body: kopf.Body, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    await training.on_spec_change(_ctx(memo), body, namespace, name)


def _needs_cancel(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """Only a Modal training that has not finished may have a call to cancel: only it carries a
    finalizer (kopf removes it once this turns false, e.g. when the training finishes)."""
    return spec.get("target") == "modal" and status.get("phase") not in TERMINAL


# Only unfinished trainings that run outside the cluster get a finalizer: their call must be cancelled.
@kopf.on.delete(*TRAININGS, when=_needs_cancel)
async def delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await training.on_external_delete(_ctx(memo), body)
