"""The thin layer of blocking Modal SDK calls under :class:`nsm.modal.bridge.SDKBridge`; it never
imports the bridge (the types both use live in :mod:`nsm.modal.types`).

Each method is one SDK round trip (or a short sequence), written against modal 1.6.4's current
API: ``Client.from_credentials``, ``App.deploy``, ``Function.from_name(...).with_options(...)
.spawn``, ``FunctionCall.from_id(...).get(timeout=0)`` / ``.cancel()``, ``Volume.from_name``,
``Volume.read_file`` and ``Volume.batch_upload``. The bridge puts a deadline on each and turns
exceptions into status messages; nothing here catches errors except "file not found". ``spawn``
takes the :class:`~nsm.modal.mapping.ModalOptions` the bridge computed once for the spawn.
"""

from __future__ import annotations

import io
from typing import Any

from nsm.modal.mapping import FUNCTION_NAME, ModalOptions
from nsm.modal.types import BridgeError, Credentials
from nsm.spec import NSMTrainingSpec


def _modal() -> Any:
    try:
        import modal
    except ImportError:
        raise BridgeError("ModalNotInstalled", "the Modal SDK is not installed: "
                          "pip install 'nsm-operator[modal]'", retryable=False) from None
    return modal


class ModalSDK:
    """Blocking SDK calls with one lazily opened client.

    With ``credentials`` (the operator: a Kubernetes Secret) the client is
    ``Client.from_credentials``; without (the CLI) ``client=None`` lets the SDK use
    ``MODAL_TOKEN_ID`` / ``MODAL_TOKEN_SECRET`` or ``~/.modal.toml`` as ``modal`` itself does.
    """

    def __init__(self, credentials: Credentials | None = None):
        self._credentials = credentials
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None and self._credentials is not None:
            self._client = _modal().Client.from_credentials(
                self._credentials.token_id, self._credentials.token_secret
            )
        return self._client

    def _volume(self, spec: NSMTrainingSpec, *, create: bool = False) -> Any:
        return _modal().Volume.from_name(
            spec.modal.volume, environment_name=spec.modal.environment,
            create_if_missing=create, client=self.client(),
        )

    def deploy(self, spec: NSMTrainingSpec) -> str:
        from nsm.modal.app import build_app

        app, _ = build_app(spec)
        app.deploy(name=spec.modal.app, environment_name=spec.modal.environment, client=self.client())
        return spec.modal.app

    def spawn(self, spec: NSMTrainingSpec, options: ModalOptions, args: tuple[Any, ...], *, retries: bool) -> str:
        modal = _modal()
        function = modal.Function.from_name(
            options.app_name, FUNCTION_NAME, environment_name=options.environment, client=self.client()
        )
        # Options are per call: every training gets its own GPU, CPU, memory, timeout and Volume
        # from its spec, on top of the deployed Function (Modal cannot remove a deployed GPU).
        configured = function.with_options(**options.function_kwargs(volume=self._volume(spec, create=True),
                                                                     retries=retries))
        return configured.spawn(*args).object_id

    def get(self, call_id: str) -> Any:
        return _modal().FunctionCall.from_id(call_id, client=self.client()).get(timeout=0)

    def cancel(self, call_id: str) -> None:
        _modal().FunctionCall.from_id(call_id, client=self.client()).cancel()

    def read_file(self, spec: NSMTrainingSpec, path: str) -> bytes | None:
        modal = _modal()
        try:
            return b"".join(self._volume(spec).read_file(path))
        except (FileNotFoundError, modal.exception.NotFoundError):
            return None

    def write_file(self, spec: NSMTrainingSpec, path: str, data: bytes) -> None:
        with self._volume(spec, create=True).batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(data), path)
