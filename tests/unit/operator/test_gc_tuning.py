"""Start-up tuning (issue #18): what start-up made is frozen, generation 0 collects later; TLS is
read one record at a time."""

from __future__ import annotations

import gc

import pytest

from nsm_operator.main import tune_gc
from nsm_operator.settings import OperatorSettings, SettingsError


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_startup_freezes_the_heap_and_raises_the_generation_0_threshold(restore_gc):
    gc.set_threshold(700, 10, 10)
    tune_gc(OperatorSettings.from_env({}).gc_threshold)
    assert gc.get_threshold() == (10_000, 10, 10)
    assert gc.get_freeze_count() > 0


def test_zero_leaves_the_interpreter_collector_alone(restore_gc):
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_gc(OperatorSettings.from_env({"NSM_OPERATOR_GC_THRESHOLD": "0"}).gc_threshold)
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_a_bad_threshold_names_the_variable():
    with pytest.raises(SettingsError, match="NSM_OPERATOR_GC_THRESHOLD"):
        OperatorSettings.from_env({"NSM_OPERATOR_GC_THRESHOLD": "-5"})


# TLS reads: asyncio's SSLProtocol reads max_size bytes at a time (a class attribute).


@pytest.fixture
def restore_tls_reads():
    import asyncio.sslproto

    before = asyncio.sslproto.SSLProtocol.max_size
    yield asyncio.sslproto.SSLProtocol
    asyncio.sslproto.SSLProtocol.max_size = before


def test_startup_reads_tls_one_record_at_a_time(restore_tls_reads):
    from nsm_operator.main import tune_tls_reads

    restore_tls_reads.max_size = 256 * 1024
    tune_tls_reads(OperatorSettings.from_env({}).tls_read_bytes)
    assert restore_tls_reads.max_size == 16_384


def test_zero_leaves_the_tls_reads_alone(restore_tls_reads):
    from nsm_operator.main import tune_tls_reads

    restore_tls_reads.max_size = 256 * 1024
    tune_tls_reads(OperatorSettings.from_env({"NSM_OPERATOR_TLS_READ_BYTES": "0"}).tls_read_bytes)
    assert restore_tls_reads.max_size == 256 * 1024


def test_a_bad_tls_read_size_names_the_variable():
    with pytest.raises(SettingsError, match="NSM_OPERATOR_TLS_READ_BYTES"):
        OperatorSettings.from_env({"NSM_OPERATOR_TLS_READ_BYTES": "-1"})
