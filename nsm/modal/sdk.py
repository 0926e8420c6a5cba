"""The thin layer of Modal SDK calls under :class:`nsm.modal.bridge.SDKBridge`; it never imports
the bridge (the types both use live in :mod:`nsm.modal.types`).

Every method is a coroutine on Modal's async interface (the ``.aio`` variants of modal 1.6.4):
``Client.from_credentials.aio``, ``App.deploy.aio``, ``Function.from_name(...).with_options(...)
.spawn.aio``, ``FunctionCall.from_id(...).get.aio(timeout=0)`` / ``.cancel.aio()`` /
``.logs.tail.aio`` / ``.logs.stream.aio``, ``Volume.read_file.aio`` and ``Volume.batch_upload.aio``
(``from_name`` / ``from_id`` / ``with_options`` are lazy and make no round trip). Being
coroutines, they stop when the bridge's deadline cancels them instead of running on in a thread.
The bridge turns exceptions into status messages; nothing here catches errors except "file not
found". ``spawn`` takes the :class:`~nsm.modal.mapping.ModalOptions` the bridge computed once.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
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
    """Async SDK calls with one lazily opened client.

    With ``credentials`` (the operator: a Kubernetes Secret) the client is
    ``Client.from_credentials``; without (the CLI) ``client=None`` lets the SDK use
    ``MODAL_TOKEN_ID`` / ``MODAL_TOKEN_SECRET`` or ``~/.modal.toml`` as ``modal`` itself does.
    """

    def __init__(self, credentials: Credentials | None = None):
        self._credentials = credentials
        self._client: Any = None

    async def client(self) -> Any:
        if self._client is None and self._credentials is not None:
            self._client = await _modal().Client.from_credentials.aio(
                self._credentials.token_id, self._credentials.token_secret
            )
        return self._client

    async def _volume(self, spec: NSMTrainingSpec, *, create: bool = False) -> Any:
        return _modal().Volume.from_name(
            spec.modal.volume, environment_name=spec.modal.environment,
            create_if_missing=create, client=await self.client(),
        )

    async def _call(self, call_id: str) -> Any:
        return _modal().FunctionCall.from_id(call_id, client=await self.client())

    async def deploy(self, spec: NSMTrainingSpec) -> str:
        from nsm.modal.app import build_app

        app, _ = build_app(spec)
        await app.deploy.aio(name=spec.modal.app, environment_name=spec.modal.environment,
                             client=await self.client())
        return spec.modal.app

    async def spawn(self, spec: NSMTrainingSpec, options: ModalOptions, args: tuple[Any, ...], *,
                    retries: bool) -> str:
        modal = _modal()
        function = modal.Function.from_name(
            options.app_name, FUNCTION_NAME, environment_name=options.environment, client=await self.client()
        )
        # Options are per call: every training gets its own GPU, CPU, memory, timeout and Volume
        # from its spec, on top of the deployed Function (Modal cannot remove a deployed GPU).
        configured = function.with_options(**options.function_kwargs(volume=await self._volume(spec, create=True),
                                                                     retries=retries))
        call = await configured.spawn.aio(*args)
        return call.object_id  # type: ignore[no-any-return]

    async def get(self, call_id: str) -> Any:
        return await (await self._call(call_id)).get.aio(timeout=0)

    async def cancel(self, call_id: str) -> None:
        await (await self._call(call_id)).cancel.aio()

    async def log_tail(self, call_id: str, entries: int) -> AsyncIterator[str]:
        """The call's last ``entries`` log messages (stdout, stderr and Modal's system lines)."""
        async for entry in (await self._call(call_id)).logs.tail.aio(entries=entries):
            yield entry.message

    async def log_stream(self, call_id: str) -> AsyncIterator[str]:
        """The call's log messages as they arrive, until Modal sees the call finish."""
        async for entry in (await self._call(call_id)).logs.stream.aio():
            yield entry.message

    async def read_file(self, spec: NSMTrainingSpec, path: str) -> bytes | None:
        modal = _modal()
        try:
            return b"".join([chunk async for chunk in (await self._volume(spec)).read_file.aio(path)])
        except (FileNotFoundError, modal.exception.NotFoundError):
            return None

    async def write_file(self, spec: NSMTrainingSpec, path: str, data: bytes) -> None:
        async with (await self._volume(spec, create=True)).batch_upload.aio(force=True) as batch:
            batch.put_file(io.BytesIO(data), path)
