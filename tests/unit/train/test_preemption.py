"""The stop-signal flag and the resumable batch order behind checkpoint-on-SIGTERM."""

import os
import signal

import pytest
import torch

from nsm.train.loaders import EpochBatchSampler
from nsm.train.preemption import PartialEpoch, PreemptionGuard


def test_guard_turns_sigterm_into_a_flag_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionGuard() as guard:
        assert not guard.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.requested and guard.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_second_sigint_interrupts_at_once():
    with PreemptionGuard() as guard:
        os.kill(os.getpid(), signal.SIGINT)
        assert guard.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_sampler_skip_yields_the_rest_of_the_same_permutation():
    sampler = EpochBatchSampler(torch.arange(23), batch_size=5, shuffle=True, seed=3)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.set_epoch(4, skip=2)
    assert list(sampler) == full[2:] and len(sampler) == len(full) - 2
    sampler.set_epoch(5)
    assert len(list(sampler)) == 5 and sampler.skip == 0


def test_partial_epoch_round_trips():
    p = PartialEpoch(epoch=2, steps=7, sums=[1.5, 3.0, 0.25, 0.125], samples=42, finite=True, lr=1e-3)
    assert PartialEpoch.from_state(p.state_dict()) == p
