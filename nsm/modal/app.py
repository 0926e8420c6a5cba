"""The Modal App that trains an NSMTraining: ``build_app(spec) -> (modal.App, modal.Function)``.

Function options are fixed when a Function is defined, so the App is built per spec by a factory
instead of at import time. The Function body (:func:`train`) is a plain module-level function and
is decorated inside :func:`build_app`; in the container Modal imports ``nsm.modal.app`` and calls
``train`` directly. Requires ``modal>=1.6`` (``pip install nsm-operator[modal]``).

* image: ``debian_slim`` (Python 3.11) + ``pip_install`` of the project's pinned dependencies
  (torch wheels bring their CUDA libraries, like the CUDA trainer image) + the ``nsm`` source;
* GPU / CPU / memory / timeout / retries from the spec (:mod:`nsm.modal.mapping`);
* the spec's Volume at ``/checkpoints``; each training writes ``/checkpoints/<name>/``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsm.contract import ExitCode
from nsm.modal.mapping import CHECKPOINT_MOUNT, FUNCTION_NAME, modal_options
from nsm.modal.runner import RetryableTrainerError, failure, fence_message, record_start, run_trainer
from nsm.spec import NSMTrainingSpec, SpecError, parse_training

if TYPE_CHECKING:  # pragma: no cover
    import modal

log = logging.getLogger(__name__)

DISTRIBUTION = "nsm-operator"
PYTHON_VERSION = "3.11"


def trainer_requirements() -> list[str]:
    """The project's pinned runtime dependencies (no extras), as the trainer image installs them."""
    try:
        reqs = importlib.metadata.requires(DISTRIBUTION) or []
        pinned = [r for r in reqs if ";" not in r]
    except importlib.metadata.PackageNotFoundError:
        pinned = []
    if pinned:
        return pinned
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])
    except (OSError, KeyError) as exc:
        raise RuntimeError(
            f"cannot find the pinned dependencies of {DISTRIBUTION}: install the package or run from "
            f"the repository ({exc})"
        ) from None


def build_image() -> "modal.Image":
    import modal

    return (
        modal.Image.debian_slim(python_version=PYTHON_VERSION)
        .pip_install(*trainer_requirements())
        .env({"PYTHONUNBUFFERED": "1"})
        .add_local_python_source("nsm")
    )


def build_app(
    spec: NSMTrainingSpec, name: str | None = None, *, strict: bool = False
) -> tuple["modal.App", "modal.Function"]:
    """An App named ``name`` (default ``spec.modal.app``) with one Function, ``train``.

    Raises :class:`~nsm.modal.mapping.ModalLimitError` (``strict``) or logs a warning per
    over-limit field (see :mod:`nsm.modal.mapping`). Defining the App needs no Modal server.
    """
    import modal

    options = modal_options(spec, strict=strict)
    for warning in options.warnings:
        log.warning("%s", warning)
    app = modal.App(name or options.app_name)
    volume = modal.Volume.from_name(
        options.volume_name, environment_name=options.environment, create_if_missing=True
    )
    function = app.function(
        image=build_image(),
        name=FUNCTION_NAME,
        include_source=False,  # the image carries the nsm package
        single_use_containers=True,  # a fresh container (and Volume view) for every training
        **options.function_kwargs(volume=volume),
    )(train)
    return app, function


_SAFE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def train(training: dict[str, Any], name: str, attempt: int = 1, token: str = "") -> dict[str, Any]:
    """The Modal Function: train ``training`` into ``/checkpoints/<name>`` (see :mod:`.runner`)."""
    import modal

    if not _SAFE_NAME.match(name or ""):
        return failure("InvalidSpec", f"training name {name!r} is not a DNS-1123 label", retryable=False)
    try:
        spec = parse_training(training).spec
    except SpecError as exc:
        return failure("InvalidSpec", str(exc), retryable=False, exit_code=ExitCode.INVALID_SPEC)
    volume = modal.Volume.from_name(spec.modal.volume, environment_name=spec.modal.environment)
    output_dir = Path(CHECKPOINT_MOUNT) / name
    try:
        volume.reload()  # see launches and checkpoints committed since this container mounted it
    except Exception as exc:  # noqa: BLE001 - a fresh container already has the latest view
        log.warning("volume reload failed: %s", exc)
    fenced = fence_message(output_dir, attempt, token)
    if fenced:
        return failure("Superseded", fenced, retryable=False)
    try:
        record_start(output_dir, attempt, token, modal.current_function_call_id())
        volume.commit()
    except Exception as exc:  # noqa: BLE001 - surfaces as one retryable error type
        raise RetryableTrainerError(f"cannot record the call's start on the volume: {exc}") from None
    env = {"NSM_TRAINING_NAME": name, "NSM_ATTEMPT": str(attempt), "NSM_TARGET": "modal"}
    os.environ.pop("NSM_TRAINING_NAMESPACE", None)  # no in-cluster progress reporter on Modal
    return run_trainer(training, output_dir, commit=volume.commit, env=env)
