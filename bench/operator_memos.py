"""Per-event costs the operator's memos save, against what they replace, in one run.

    .venv/bin/python bench/operator_memos.py [--number 3000]

* kopf's diff-base ``build`` (stock ``AnnotationsDiffBaseStorage``) against the operator's
  ``LeanDiffBaseStorage`` without its memo and with a memo hit (a status echo: same spec, labels
  and annotations);
* ``nsm.spec.parse_spec`` (pydantic) against ``Training.from_body`` on an unchanged spec.

The body is a training as the API server returns it under a burst: conditions, managedFields,
kopf's annotations. Prints microseconds per call and the ratios to the stock path.
"""

from __future__ import annotations

import argparse
import copy
import timeit

import kopf

from nsm.spec import parse_spec
from nsm_operator.diffbase import LeanDiffBaseStorage
from nsm_operator.resource import Training

BODY = {
    "apiVersion": "nsm.dev/v1alpha1",
    "kind": "NSMTraining",
    "metadata": {
        "name": "bench-0001", "namespace": "bench", "uid": "u-1", "resourceVersion": "4242", "generation": 1,
        "labels": {"team": "a"},
        "annotations": {"kopf.zalando.org/create": '{"started":"2026-11-29T19:00:00Z"}'},
        "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:domain": {}}}},
                          {"manager": "nsm-operator", "operation": "Update", "subresource": "status",
                           "fieldsV1": {"f:status": {f"f:{k}": {} for k in "abcdefghij"}}}],
    },
    "spec": {"domain": "causal", "epochs": 10, "resources": {"gpu": {"count": 0}, "cpu": "100m", "memory": "128Mi"}},
    "status": {"phase": "Pending", "attempts": 1, "retries": 0, "activeJob": "bench-0001-a1",
               "conditions": [{"type": t, "status": "False", "reason": "AttemptCreated", "message": "attempt 1",
                               "lastTransitionTime": "2026-11-29T19:00:00Z", "observedGeneration": 1}
                              for t in ("Created", "Retrying", "Ready", "Waiting")]},
}  # fmt: skip


def per_call(fn, number: int) -> float:
    fn()
    return 1e6 * min(timeit.repeat(fn, number=number, repeat=3)) / number


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=3000)
    n = parser.parse_args().number
    body, fields = kopf.Body(copy.deepcopy(BODY)), {("spec",)}
    stock = per_call(lambda: kopf.AnnotationsDiffBaseStorage().build(body=body, extra_fields=fields), n)
    lean = per_call(lambda: LeanDiffBaseStorage(memo_size=0).build(body=body, extra_fields=fields), n)
    memo = LeanDiffBaseStorage()
    hit = per_call(lambda: memo.build(body=body, extra_fields=fields), n)
    raw = copy.deepcopy(BODY)
    parse = per_call(lambda: parse_spec(dict(raw["spec"])), n)
    reuse = per_call(lambda: Training.from_body(raw), n)
    print(f"{'diff base: kopf stock build':38}{stock:9.1f} us")
    print(f"{'diff base: lean build, no memo':38}{lean:9.1f} us  ({lean / stock:.2f}x stock)")
    print(f"{'diff base: lean build, memo hit':38}{hit:9.1f} us  ({hit / stock:.2f}x stock)")
    print(f"{'spec: parse_spec (pydantic)':38}{parse:9.1f} us")
    print(f"{'spec: Training.from_body, unchanged':38}{reuse:9.1f} us  ({reuse / parse:.2f}x parse_spec)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
