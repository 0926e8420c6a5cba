"""The NSM trainer: a small epoch loop (:mod:`.loop`) inside an outer loop (:mod:`.trainer`)
that owns checkpoints, history, early stopping, metrics and progress reporting.

Heavy imports (torch) happen in the submodules; ``import nsm.train`` itself stays cheap.
"""

from __future__ import annotations

from nsm.train.errors import TrainingDiverged

__all__ = ["TrainingDiverged"]
