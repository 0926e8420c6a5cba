"""Job (and pod) bodies -> lifecycle observations."""

from __future__ import annotations

from nsm_operator.lifecycle import State
from nsm_operator.targets.kubernetes import job_attempt, observe_job


def job(conditions=(), suspend=False, **status):
    return {
        "metadata": {"name": "t-a1", "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"nsm.dev/attempt": "1"}},
        "spec": {"suspend": suspend},
        "status": {"startTime": "2026-01-01T00:00:01Z", "conditions": list(conditions), **status},
    }


def cond(type_, reason="", message=""):
    return {"type": type_, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:10:00Z"}  # fmt: skip


def pod(exit_code, reason="Error", created="2026-01-01T00:00:02Z", message=None):
    term = {"exitCode": exit_code, "reason": reason}
    if message:
        term["message"] = message
    return {"metadata": {"creationTimestamp": created},
            "status": {"containerStatuses": [{"name": "trainer", "state": {"terminated": term}}]}}  # fmt: skip


def test_absent_pending_running_queued():
    assert observe_job(None).state == State.absent
    assert observe_job(job(active=1)).state == State.pending
    running = observe_job(job(active=1, ready=1))
    assert running.state == State.running and running.started_at.second == 1 and running.created_at.second == 0
    assert observe_job(job(suspend=True)).state == State.queued
    assert job_attempt(job()) == 1


def test_complete():
    obs = observe_job(job([cond("Complete")], completionTime="2026-01-01T00:05:00Z"))
    assert obs.state == State.succeeded and obs.finished_at.minute == 5 and obs.exit_code == 0


def test_retryable_failure_takes_exit_code_and_reason_from_the_newest_pod():
    pods = [pod(1, created="2026-01-01T00:00:02Z"), pod(137, "OOMKilled", created="2026-01-01T00:00:09Z")]
    obs = observe_job(job([cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]), pods)
    assert (obs.state, obs.exit_code, obs.reason, obs.retryable) == (State.failed, 137, "OOMKilled", True)
    assert obs.message == "Job has reached the specified backoff limit"


def test_pod_failure_policy_is_not_retryable():
    obs = observe_job(job([cond("Failed", "PodFailurePolicy", "Container trainer failed with exit code 3")]),
                      [pod(3, message="loss is NaN")])  # fmt: skip
    assert (obs.reason, obs.exit_code, obs.retryable) == ("PodFailurePolicy", 3, False)
    assert obs.message.endswith("loss is NaN")


def test_deadline_exceeded_is_retryable():
    obs = observe_job(job([cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]))
    assert (obs.state, obs.reason, obs.retryable, obs.exit_code) == (State.failed, "DeadlineExceeded", True, None)


def test_failure_target_counts_as_failed():
    obs = observe_job(job([cond("FailureTarget", "PodFailurePolicy")]), [pod(2)])
    assert obs.state == State.failed and not obs.retryable


# --- one writer per checkpoint: which pods hold back a launch ------------------------------------


class _Kube:
    """Answers the one LIST a launch makes; records the selector it was asked for."""

    def __init__(self, pods):
        self.pods, self.selectors = pods, []

    async def list(self, kind, namespace, selector):
        self.selectors.append((kind, namespace, selector))
        return self.pods


def _trainer_pod(name, attempt, phase="Running", deleting=False):
    meta = {"name": name, "labels": {"nsm.dev/training": "t", "nsm.dev/attempt": str(attempt)}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase}}


def _ctx(make_training, kube, attempts):
    from nsm_operator.settings import OperatorSettings
    from nsm_operator.targets.base import TargetContext

    return TargetContext(training=make_training(name="t"), status={"attempts": attempts}, settings=OperatorSettings(),
                         kube=kube)  # fmt: skip


async def test_earlier_pods_block_the_next_attempt_until_they_finish(make_training):
    from nsm_operator.targets.kubernetes import KubernetesTarget

    pods = [_trainer_pod("t-a1-x", 1), _trainer_pod("t-a1-y", 1, phase="Failed"), _trainer_pod("t-a2-z", 2)]
    kube = _Kube(pods)
    target = KubernetesTarget()
    # Attempt 2 after attempt 1: the running a1 pod blocks; a finished one and a2's own do not.
    assert await target.earlier_pods(_ctx(make_training, kube, 1), 2) == ["t-a1-x"]
    assert kube.selectors == [("Pod", make_training(name="t").namespace, "nsm.dev/training=t")]
    # Attempt 2 started again (its Job was deleted by a person): its own unfinished pods block too.
    assert await target.earlier_pods(_ctx(make_training, kube, 2), 2) == ["t-a1-x", "t-a2-z"]
    # A pod being deleted blocks even if it is the new attempt's.
    kube.pods = [_trainer_pod("t-a3-w", 3, deleting=True)]
    assert await target.earlier_pods(_ctx(make_training, kube, 2), 3) == ["t-a3-w"]


async def test_a_first_start_lists_nothing_and_a_blocked_launch_creates_nothing(make_training):
    from nsm_operator.targets.kubernetes import KubernetesTarget

    kube = _Kube([_trainer_pod("t-a1-x", 1)])
    target = KubernetesTarget()
    assert await target.earlier_pods(_ctx(make_training, kube, 0), 1) == [] and kube.selectors == []
    fields = await target.launch(_ctx(make_training, kube, 1), 2)  # _Kube has no create: nothing is created
    assert fields["reason"] == "PreviousAttemptTerminating" and fields["activeJob"] is None
    assert "t-a1-x" in fields["message"] and "attempt 2" in fields["message"]


# --- several nodes (issue #14): one Indexed Job, gang semantics ----------------------------------


def indexed_job(conditions=(), **status):
    body = job(conditions, **status)
    body["spec"].update(completionMode="Indexed", completions=2, parallelism=2)
    return body


def test_a_multi_node_attempt_runs_once_every_pod_is_ready():
    """One pod still Pending (scheduling, image pull) keeps the attempt pending: the pod watch says
    why and startupTimeoutSeconds still ends it."""
    assert observe_job(indexed_job(active=2)).state == State.pending
    assert observe_job(indexed_job(active=2, ready=1)).state == State.pending
    assert observe_job(indexed_job(active=2, ready=2)).state == State.running


def test_one_failed_pod_fails_the_multi_node_attempt():
    """backoffLimit 0: the Job controller fails the whole Job on the first failed pod; the exit code
    is that pod's (the newest terminated one), so retryability follows the failing rank."""
    pods = [pod(1, created="2026-01-01T00:00:02Z"),
            {"metadata": {"creationTimestamp": "2026-01-01T00:00:02Z"}, "status": {"phase": "Running"}}]
    obs = observe_job(indexed_job([cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff "
                                        "limit")], active=1, failed=1), pods)  # fmt: skip
    assert (obs.state, obs.exit_code, obs.reason, obs.retryable) == (State.failed, 1, "Error", True)
    # Pods created together: the one that ended first, not the rank the Job controller stopped.
    stopped, culprit = pod(143, created="2026-01-01T00:00:02Z"), pod(1, created="2026-01-01T00:00:02Z")
    stopped["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = "2026-01-01T00:09:05Z"
    culprit["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = "2026-01-01T00:09:00Z"
    for order in ([stopped, culprit], [culprit, stopped]):
        obs = observe_job(indexed_job([cond("Failed", "BackoffLimitExceeded")], failed=2), order)
        assert obs.exit_code == 1
    final = observe_job(indexed_job([cond("Failed", "PodFailurePolicy")], failed=1), [pod(2)])
    assert final.state == State.failed and not final.retryable


class _Creates(_Kube):
    """Records creates; ``existing`` objects answer 409 and are read back."""

    def __init__(self, existing=()):
        super().__init__([])
        self.created, self.patched = [], []
        self.existing = {(o["kind"], o["metadata"]["name"]): o for o in existing}

    async def create_object(self, obj, decode=True):
        self.created.append((obj["kind"], obj["metadata"]["name"]))
        return None if (obj["kind"], obj["metadata"]["name"]) in self.existing else dict(obj)

    async def create(self, obj):
        return await self.create_object(obj) is not None

    async def get(self, kind, namespace, name):
        return self.existing.get((kind, name))

    async def patch(self, kind, namespace, name, body):
        self.patched.append((kind, name))

    def low_priority(self):
        import contextlib

        return contextlib.nullcontext()

    def urgent(self):
        import contextlib

        return contextlib.nullcontext()


async def test_a_multi_node_launch_creates_the_service_first_and_again_on_a_retry(make_training):
    from nsm_operator.builders import build_rendezvous_service
    from nsm_operator.settings import OperatorSettings
    from nsm_operator.targets.base import TargetContext
    from nsm_operator.targets.kubernetes import KubernetesTarget

    training = make_training(name="t", resources={"nodes": 2})
    kube = _Creates()
    ctx = TargetContext(training=training, status={"attempts": 0}, settings=OperatorSettings(), kube=kube)
    assert (await KubernetesTarget().launch(ctx, 1))["activeJob"] == "t-a1"
    assert set(kube.created[:2]) == {("ServiceAccount", "t-trainer"), ("Service", "t-rdzv")}
    assert ("Job", "t-a1") in kube.created
    # Attempt 2: a Service that is still there (ours) is used; a missing one is created again.
    ours = build_rendezvous_service(training)
    for existing in ([ours], []):
        kube = _Creates(existing)
        ctx = TargetContext(training=training, status={"attempts": 1}, settings=OperatorSettings(), kube=kube)
        assert (await KubernetesTarget().launch(ctx, 2))["activeJob"] == "t-a2"
        assert ("Service", "t-rdzv") in kube.created and ("Job", "t-a2") in kube.created


async def test_a_launch_makes_what_the_pod_starts_with_and_leaves_the_rest_to_finish_launch(make_training):
    from nsm_operator.settings import OperatorSettings
    from nsm_operator.targets.base import TargetContext
    from nsm_operator.targets.kubernetes import KubernetesTarget

    kube = _Creates()
    ctx = TargetContext(training=make_training(name="t"), status={"attempts": 0}, settings=OperatorSettings(), kube=kube)
    assert (await KubernetesTarget().launch(ctx, 1))["activeJob"] == "t-a1"
    assert kube.created == [("ServiceAccount", "t-trainer"), ("Job", "t-a1")] and ctx.unfinished == 1
    assert ctx.launched["metadata"]["name"] == "t-a1"
    kube.created.clear()
    await KubernetesTarget().finish_launch(ctx)
    # In creation order, one at a time: the last one made means every one before it was.
    assert kube.created == [("PersistentVolumeClaim", "t-checkpoints"), ("ConfigMap", "t-spec"),
                            ("ConfigMap", "t-progress"), ("Role", "t-trainer"), ("RoleBinding", "t-trainer")]  # fmt: skip


async def test_a_later_attempt_rewrites_the_spec_before_its_job(make_training):
    """Spec changes apply from the next attempt: its pod must not start from the old spec."""
    from nsm_operator.builders import build_configmap
    from nsm_operator.settings import OperatorSettings
    from nsm_operator.targets.base import TargetContext
    from nsm_operator.targets.kubernetes import KubernetesTarget

    training = make_training(name="t")
    kube = _Creates([build_configmap(training)])
    ctx = TargetContext(training=training, status={"attempts": 1}, settings=OperatorSettings(), kube=kube)
    assert (await KubernetesTarget().launch(ctx, 2))["activeJob"] == "t-a2"
    assert kube.created.index(("ConfigMap", "t-spec")) < kube.created.index(("Job", "t-a2"))
    assert kube.patched == [("ConfigMap", "t-spec")]


async def test_a_resumed_finish_reads_the_last_child_and_leaves_an_existing_spec_alone(make_training):
    from nsm_operator.builders import build_children
    from nsm_operator.settings import OperatorSettings
    from nsm_operator.targets.base import TargetContext
    from nsm_operator.targets.kubernetes import KubernetesTarget

    training = make_training(name="t")
    children = {c["metadata"]["name"] + "/" + c["kind"]: c for c in build_children(training, "ReadWriteOncePod")}
    settings = OperatorSettings()
    # All made: the RoleBinding (the last) is found, nothing else is asked for.
    kube = _Creates(children.values())
    ctx = TargetContext(training=training, status={"attempts": 1}, settings=settings, kube=kube)
    await KubernetesTarget().finish_launch(ctx, resumed=True)
    assert kube.created == [] and kube.patched == []
    # The operator stopped before the RoleBinding: everything is ensured, the spec kept as it is.
    kube = _Creates([c for key, c in children.items() if not key.endswith("/RoleBinding")])
    ctx = TargetContext(training=training, status={"attempts": 1}, settings=settings, kube=kube)
    await KubernetesTarget().finish_launch(ctx, resumed=True)
    assert kube.created[-1] == ("RoleBinding", "t-trainer") and len(kube.created) == 5 and kube.patched == []
    # Not resumed (a new attempt): the existing spec ConfigMap is rewritten.
    await KubernetesTarget().finish_launch(ctx)
    assert kube.patched == [("ConfigMap", "t-spec")]


async def test_finish_launch_raises_for_a_foreign_child(make_training):
    import pytest

    from nsm_operator.builders import build_configmap
    from nsm_operator.errors import ForeignObject
    from nsm_operator.settings import OperatorSettings
    from nsm_operator.targets.base import TargetContext
    from nsm_operator.targets.kubernetes import KubernetesTarget

    training = make_training(name="t")
    foreign = build_configmap(training)
    foreign["metadata"]["ownerReferences"] = []
    kube = _Creates([foreign])
    ctx = TargetContext(training=training, status={"attempts": 1}, settings=OperatorSettings(), kube=kube)
    with pytest.raises(ForeignObject, match="ConfigMap ml/t-spec already exists and is not this training's"):
        await KubernetesTarget().finish_launch(ctx)
    assert ("Role", "t-trainer") not in kube.created  # nothing after it


async def test_a_foreign_service_fails_the_launch(make_training):
    """A Service of that name someone else made would choose, by its selector, whom the ranks meet."""
    import pytest

    from nsm_operator.builders import build_rendezvous_service
    from nsm_operator.errors import ForeignObject
    from nsm_operator.settings import OperatorSettings
    from nsm_operator.targets.base import TargetContext
    from nsm_operator.targets.kubernetes import KubernetesTarget

    training = make_training(name="t", resources={"nodes": 2})
    foreign = build_rendezvous_service(training)
    foreign["metadata"]["ownerReferences"] = []
    ctx = TargetContext(training=training, status={"attempts": 0}, settings=OperatorSettings(), kube=_Creates([foreign]))
    with pytest.raises(ForeignObject, match="Service ml/t-rdzv already exists and is not this training's"):
        await KubernetesTarget().launch(ctx, 1)


def test_the_part_kept_after_a_launch_observes_the_same():
    from nsm_operator.targets.kubernetes import observed_part

    assert observed_part(None) is None
    for body in (job(suspend=True), job(active=1), job(active=1, ready=1), job([cond("Complete")]),
                 job([cond("Failed", "BackoffLimitExceeded", "limit")]), indexed_job(active=2, ready=1),
                 indexed_job(active=2, ready=2)):  # fmt: skip
        full = {**body, "metadata": {**body["metadata"], "managedFields": [{"manager": "x"}], "uid": "u"},
                "spec": {**body["spec"], "template": {"spec": {"containers": [{"name": "trainer"}]}}}}
        slim = observed_part(full)
        assert "managedFields" not in slim["metadata"] and "template" not in slim["spec"]
        assert observe_job(slim) == observe_job(full) and job_attempt(slim) == job_attempt(full)
