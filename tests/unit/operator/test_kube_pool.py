"""The operator's request pool: as wide as the admission, and idle connections kept long enough
that a burst's trailing writes reuse them, never longer than the API server keeps them."""

from __future__ import annotations

import kopf

from nsm_operator.kube import KEEPALIVE, POOL, Kube

API_SERVER_IDLE_TIMEOUT = 90.0  # k8s.io/apiserver pkg/server/secure_serving.go


async def test_request_pool_keeps_idle_connections_shorter_than_the_api_server():
    kube = Kube(kopf.ConnectionInfo(server="https://127.0.0.1:1", insecure=True))
    try:
        connector = kube._get_session().connector
        assert connector.limit == POOL == kube.admission.size
        assert connector._keepalive_timeout == KEEPALIVE
        assert 15.0 < KEEPALIVE < API_SERVER_IDLE_TIMEOUT  # longer than aiohttp's default, and the client closes first
        assert kube._get_stream_session().connector.limit == 0  # watch streams: one connection each, unbounded
    finally:
        await kube.close()
