"""Torch threads that follow the machine's load (mask2former/engine/threads.py)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mask2former.engine.threads import AdaptiveThreads, install_adaptive_threads


def test_thread_count_for_a_load():
    policy = AdaptiveThreads(max_threads=2)
    policy.cores = 2
    assert policy.threads_for(0.0, current=2) == 2
    assert policy.threads_for(1.0, current=2) == 1  # one busy neighbour: the free core
    assert policy.threads_for(3.5, current=1) == 1  # never fewer than one
    assert policy.threads_for(0.4, current=1) == 1  # 1.6 cores free: not enough to go up
    assert policy.threads_for(0.1, current=1) == 2
    assert AdaptiveThreads(max_threads=1).threads_for(0.0, current=1) == 1  # never above the max


@pytest.mark.skipif(not AdaptiveThreads.supported(), reason="needs /proc (Linux)")
def test_a_busy_neighbour_takes_a_core_and_the_model_still_runs():
    threads = torch.get_num_threads()
    model = torch.nn.Linear(4, 2)
    cores = AdaptiveThreads().cores
    policy = install_adaptive_threads(model, max_threads=cores)
    policy.interval = 0.5
    # Another program, not a child of this process (children, e.g. data loader workers, count as
    # this process's own load): a shell that starts the busy loop and waits for it.
    busy_loop = f"'{sys.executable}' -c 'while True: pass'; true"
    neighbour = subprocess.Popen(["sh", "-c", busy_loop], start_new_session=True)
    try:
        x = torch.ones(3, 4)
        expected = x @ model.weight.T + model.bias
        torch.testing.assert_close(model(x), expected)  # the hook leaves the inputs alone
        time.sleep(1.0)
        model(x)
        assert torch.get_num_threads() <= max(1, cores - 1)
    finally:
        os.killpg(neighbour.pid, signal.SIGKILL)
        neighbour.wait()
        torch.set_num_threads(threads)
