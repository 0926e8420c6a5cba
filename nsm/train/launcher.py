"""``nsm train --nproc-per-node N --nnodes M``: start this node's N workers with torch's launcher.

The launcher is the process the Job's container (or the Modal function) runs: it has already
parsed the spec and run the CLI preflight, so an invalid spec exits 2 before any worker starts.
It then runs :func:`torch.distributed.launcher.api.elastic_launch` (what ``torchrun`` runs) with
a static rendezvous on ``MASTER_ADDR:MASTER_PORT`` and this node's rank from
``JOB_COMPLETION_INDEX`` (:mod:`nsm.contract`); every worker runs the same ``nsm train`` command
line and, seeing ``RANK``/``WORLD_SIZE`` in its environment, trains as one rank
(:class:`nsm.train.distributed.DistributedTrainer`).

Exit code: the Job's podFailurePolicy and the Modal runner read the launcher's exit code, so it is
the failed workers' protocol code (:class:`~nsm.contract.ExitCode`), not torchrun's generic 1:
a non-retryable code (2 invalid spec, 3 diverged) of any rank first, then rank 0's code, then the
lowest failed rank's. A worker killed by signal ``s`` counts as ``128 + s``. SIGTERM/SIGINT to the
launcher is forwarded to the workers by torch's agent (they checkpoint at the same step and exit);
the launcher then exits ``128 + signal`` (143 for SIGTERM).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Mapping, Sequence

from nsm.contract import (
    MASTER_ADDR_ENV,
    MASTER_PORT_ENV,
    NODE_RANK_ENV,
    NON_RETRYABLE_EXIT_CODES,
    RENDEZVOUS_PORT,
    TRAINING_UID_ENV,
    ExitCode,
)

# Seconds the launcher gives its workers to write last.pt after forwarding a stop signal, before
# SIGKILL (Kubernetes' default grace period is 30 s; the pod's own grace period bounds it anyway).
SHUTDOWN_TIMEOUT = 60


def exit_code_of(failures: Mapping[int, int]) -> int:
    """The launcher's exit code for the failed workers' exit codes (``{global rank: code}``)."""
    if not failures:
        return int(ExitCode.ERROR)
    codes = {rank: 128 - code if code < 0 else code for rank, code in failures.items()}
    for rank in sorted(codes):
        if codes[rank] in NON_RETRYABLE_EXIT_CODES:
            return codes[rank]
    return codes.get(0, codes[min(codes)]) or int(ExitCode.ERROR)


def rendezvous(env: Mapping[str, str] | None = None) -> tuple[str, int, int]:
    """(master address, port, this node's rank) from the environment of the contract."""
    env = os.environ if env is None else env
    addr = env.get(MASTER_ADDR_ENV) or "127.0.0.1"
    port = int(env.get(MASTER_PORT_ENV) or RENDEZVOUS_PORT)
    node_rank = int(env.get(NODE_RANK_ENV) or 0)
    return addr, port, node_rank


def launch(argv: Sequence[str], nproc_per_node: int, nnodes: int) -> int:
    """Run ``python -m nsm train *argv`` as ``nproc_per_node`` workers of an ``nnodes`` job."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    addr, port, node_rank = rendezvous()
    if not 0 <= node_rank < nnodes:
        print(f"nsm train: {NODE_RANK_ENV}={node_rank} is outside --nnodes {nnodes}", file=sys.stderr)
        return int(ExitCode.INVALID_SPEC)
    config = LaunchConfig(
        min_nodes=nnodes,
        max_nodes=nnodes,
        nproc_per_node=nproc_per_node,
        run_id=os.environ.get(TRAINING_UID_ENV) or uuid.uuid4().hex,
        rdzv_backend="static",
        rdzv_endpoint=f"{addr}:{port}",
        rdzv_configs={"rank": node_rank},
        max_restarts=0,  # a failed attempt is the operator's to retry (from last.pt)
        monitor_interval=0.1,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    # OpenMP threads: torchrun's default of 1 per worker when unset would slow CPU runs by the
    # core count; leave the user's setting alone, else share the cores among the local workers.
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // nproc_per_node))
    try:
        elastic_launch(config, sys.executable)("-m", "nsm", "train", *argv)
    except ChildFailedError as exc:
        code = exit_code_of({rank: f.exitcode for rank, f in exc.failures.items()})
        print(f"nsm train: worker(s) {sorted(exc.failures)} failed; exit code {code}", file=sys.stderr)
        return code
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return int(ExitCode.OK)
