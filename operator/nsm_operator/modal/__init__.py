"""Operator-side helpers of the Modal target: credentials from a Secret, choosing the bridge.

The operator never touches Modal's SDK: it talks to a :class:`nsm.modal.bridge.ModalBridge`
(``SDKBridge`` in production, a fake in the e2e tier) chosen by ``NSM_OPERATOR_MODAL_BRIDGE``.
"""
