"""Credentials from the Secret and the choice of bridge (nsm_operator.targets.modal_credentials); no Modal server."""

from __future__ import annotations

import base64

import pytest

from nsm.modal.bridge import BridgeError, SDKBridge
from nsm_operator.targets.modal_credentials import (
    BridgeCache,
    bridge_factory,
    credentials_from_secret,
    default_bridge,
    secret_ref,
)
from nsm_operator.settings import OperatorSettings
from tests.fakes.modal_bridge import FakeBridge


def _secret(version: str = "1", **data: str) -> dict:
    return {"metadata": {"resourceVersion": version},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def test_secret_ref() -> None:
    assert secret_ref(OperatorSettings(), "ml") == ("ml", "modal-credentials")
    assert secret_ref(OperatorSettings(modal_secret="nsm-system/modal"), "ml") == ("nsm-system", "modal")


def test_credentials_and_messages_that_name_what_is_missing() -> None:
    creds = credentials_from_secret(_secret(MODAL_TOKEN_ID="ak-1234567", MODAL_TOKEN_SECRET="as-7654321"), "ml", "m")
    assert (creds.token_id, creds.token_secret) == ("ak-1234567", "as-7654321")
    with pytest.raises(BridgeError, match=r"Secret ml/m \(NSM_OPERATOR_MODAL_SECRET\) not found"):
        credentials_from_secret(None, "ml", "m")
    with pytest.raises(BridgeError, match="has no usable MODAL_TOKEN_SECRET") as info:
        credentials_from_secret(_secret(MODAL_TOKEN_ID="ak-1234567"), "ml", "m")
    assert "ak-1234567" not in str(info.value)


def test_bridge_factory(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    assert bridge_factory(OperatorSettings.from_env({})) is default_bridge
    bridge = default_bridge(credentials_from_secret(_secret(MODAL_TOKEN_ID="a", MODAL_TOKEN_SECRET="b"), "n", "s"), None)
    assert isinstance(bridge, SDKBridge) and not bridge.modal_retries and not bridge.auto_deploy
    env = {"NSM_OPERATOR_MODAL_BRIDGE": "tests.fakes.modal_bridge:from_env"}
    assert bridge_factory(OperatorSettings.from_env(env)).__name__ == "from_env"
    with pytest.raises(BridgeError, match="expected module:factory"):
        bridge_factory(OperatorSettings.from_env({"NSM_OPERATOR_MODAL_BRIDGE": "nope"}))
    with pytest.raises(BridgeError, match="ModalBridgeConfig"):
        bridge_factory(OperatorSettings.from_env({"NSM_OPERATOR_MODAL_BRIDGE": "tests.fakes.modal_bridge:nope"}))


def test_a_rotated_token_gives_a_new_bridge(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("NSM_OPERATOR_MODAL_BRIDGE", "tests.fakes.modal_bridge:from_env")
    monkeypatch.setenv("NSM_FAKE_MODAL_DIR", str(tmp_path))
    cache = BridgeCache()
    one = cache.get(OperatorSettings.from_env(), _secret("1", MODAL_TOKEN_ID="a", MODAL_TOKEN_SECRET="b"), "ml", "m")
    assert isinstance(one, FakeBridge)
    assert cache.get(OperatorSettings.from_env(), _secret("1", MODAL_TOKEN_ID="a", MODAL_TOKEN_SECRET="b"), "ml", "m") is one
    two = cache.get(OperatorSettings.from_env(), _secret("2", MODAL_TOKEN_ID="a", MODAL_TOKEN_SECRET="c"), "ml", "m")
    assert two is not one
