"""The Modal target's credentials (a Kubernetes Secret) and the bridge implementation they open.

The operator never touches Modal's SDK: it talks to a :class:`nsm.modal.types.ModalBridge`
(``SDKBridge`` in production, a fake in the e2e tier).


* ``NSM_OPERATOR_MODAL_SECRET`` names the Secret: ``name`` (looked up in the training's
  namespace) or ``namespace/name``. It must hold ``MODAL_TOKEN_ID`` and ``MODAL_TOKEN_SECRET``.
  The values are read with the operator's Kubernetes client, passed to the bridge and nowhere
  else: never logged, never in status or events (:class:`~nsm.modal.types.Credentials` has no
  readable ``repr``).
* ``NSM_OPERATOR_MODAL_BRIDGE=module:factory`` chooses the bridge; ``factory(credentials,
  settings)`` returns a :class:`~nsm.modal.types.ModalBridge`. Default:
  :func:`default_bridge` (Modal's SDK). The e2e tier uses ``tests.fakes.modal_bridge:from_env``.
"""

from __future__ import annotations

import base64
import binascii
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from nsm.modal.bridge import SDKBridge
from nsm.modal.types import BridgeError, Credentials, ModalBridge

from nsm_operator.settings import OperatorSettings

BRIDGE_ENV = "NSM_OPERATOR_MODAL_BRIDGE"
TOKEN_ID_KEY, TOKEN_SECRET_KEY = "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"

BridgeFactory = Callable[[Credentials, Any], ModalBridge]


def default_bridge(credentials: Credentials, settings: Any) -> ModalBridge:
    """Modal's SDK with the Secret's token; Modal's own retries off (the operator retries), and no
    implicit deploy: building the image takes minutes, which a reconcile must not wait for
    (``nsm modal deploy`` once; a missing App fails the attempt with that advice)."""
    return SDKBridge(credentials, modal_retries=False, auto_deploy=False)


def bridge_factory(settings: OperatorSettings) -> BridgeFactory:
    """The factory named by ``settings.modal_bridge`` (``$NSM_OPERATOR_MODAL_BRIDGE``)."""
    spec = settings.modal_bridge.strip()
    if not spec:
        return default_bridge
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise BridgeError("ModalBridgeConfig", f"{BRIDGE_ENV}={spec!r}: expected module:factory", retryable=False)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise BridgeError("ModalBridgeConfig", f"{BRIDGE_ENV}={spec!r}: {exc}", retryable=False) from None
    return factory  # type: ignore[no-any-return]


def secret_ref(settings: OperatorSettings, training_namespace: str) -> tuple[str, str]:
    """(namespace, name) of the credentials Secret."""
    ref = settings.modal_secret or "modal-credentials"
    namespace, sep, name = ref.partition("/")
    return (namespace, name) if sep else (training_namespace, ref)


def credentials_from_secret(secret: Mapping[str, Any] | None, namespace: str, name: str) -> Credentials:
    """The token in ``secret`` (a Secret body); :class:`BridgeError` names what is missing."""
    where = f"Secret {namespace}/{name} (NSM_OPERATOR_MODAL_SECRET)"
    if secret is None:
        raise BridgeError("ModalCredentialsMissing",
                          f"{where} not found; create it with keys {TOKEN_ID_KEY} and {TOKEN_SECRET_KEY}",
                          retryable=True)
    data = secret.get("data") or {}
    values: dict[str, str] = {}
    for key in (TOKEN_ID_KEY, TOKEN_SECRET_KEY):
        raw = data.get(key)
        if raw is None and key in (secret.get("stringData") or {}):
            raw = base64.b64encode(secret["stringData"][key].encode()).decode()
        try:
            value = base64.b64decode(raw or "", validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            value = ""
        if not value:
            raise BridgeError("ModalCredentialsMissing", f"{where} has no usable {key}", retryable=True)
        values[key] = value
    return Credentials(values[TOKEN_ID_KEY], values[TOKEN_SECRET_KEY])


class BridgeCache:
    """One bridge per Secret version, so a rotated token takes effect at the next poll."""

    def __init__(self) -> None:
        self._bridges: dict[tuple[str, str, str], ModalBridge] = {}

    def get(self, settings: OperatorSettings, secret: Mapping[str, Any] | None, namespace: str, name: str) -> ModalBridge:
        credentials = credentials_from_secret(secret, namespace, name)
        version = str(((secret or {}).get("metadata") or {}).get("resourceVersion") or "")
        key = (namespace, name, version)
        bridge = self._bridges.get(key)
        if bridge is None:
            for old in [k for k in self._bridges if k[:2] == key[:2]]:
                del self._bridges[old]
            bridge = self._bridges[key] = bridge_factory(settings)(credentials, settings)
        return bridge
