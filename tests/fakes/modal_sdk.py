"""An async stand-in for :class:`nsm.modal.sdk.ModalSDK` under the real
:class:`nsm.modal.bridge.SDKBridge`: Modal's servers are unreachable from the test machines, so
the bridge's deadlines, error mapping, redaction and the CLI's ``logs`` / ``attach`` are tested
against scripted coroutines instead of Modal's ``.aio`` calls.
"""

from __future__ import annotations

import asyncio
from typing import Any


class FakeSDK:
    """Scripted async SDK: ``get_result`` is returned or raised by ``get``; ``delay`` awaits first.

    ``cancelled`` lists the calls whose await was cancelled (they saw ``CancelledError``).
    """

    def __init__(self, get_result: Any = None, delay: float = 0.0, spawn_error: BaseException | None = None,
                 logs: tuple[str, ...] = ()):
        self.get_result = get_result
        self.delay = delay
        self.spawn_error = spawn_error
        self.logs = logs
        self.log: list[tuple[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.options: list[Any] = []
        self.cancelled: list[str] = []

    async def _maybe(self, value: Any, what: str = "call") -> Any:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.append(what)
            raise
        if isinstance(value, BaseException):
            raise value
        return value

    async def deploy(self, spec):
        self.log.append(("deploy", spec.modal.app))
        self.deployed_gpus = spec.resources.gpu.count
        self.spawn_error = None
        return spec.modal.app

    async def spawn(self, spec, options, args, *, retries):
        self.options.append(options)
        self.log.append(("spawn", args[1:], retries))
        if self.spawn_error is not None:
            raise self.spawn_error
        return await self._maybe("fc-1", "spawn")

    async def get(self, call_id):
        return await self._maybe(self.get_result, "get")

    async def cancel(self, call_id):
        self.log.append(("cancel", call_id))
        return await self._maybe(None, "cancel")

    async def log_tail(self, call_id, entries):
        self.log.append(("log_tail", call_id, entries))
        for message in self.logs[-entries:]:
            yield message

    async def log_stream(self, call_id):
        self.log.append(("log_stream", call_id))
        for message in self.logs:
            await self._maybe(None, "log_stream")
            yield message

    async def read_file(self, spec, path):
        return await self._maybe(self.files.get(path), "read_file")

    async def write_file(self, spec, path, data):
        self.log.append(("write", path))
        self.files[path] = data
