"""
Intra-op threads that follow the machine's load, so that a busy neighbour costs about its share.

PyTorch starts one OpenMP thread per core. Every parallel region waits for its slowest thread,
so when another program keeps one of two cores busy, the thread that shares that core makes
every region about twice as slow, and the other thread spins while it waits: training of the
main job went from 0.22 s to 0.7-0.9 s per iteration beside one busy process.
Detectron2 leaves the thread count fixed.

:class:`AdaptiveThreads` measures, about once a second, how many cores the other programs on
the machine use (from /proc/stat, less the CPU time of this process and its child processes,
e.g. data loader workers) and sets ``torch.set_num_threads`` to the cores left over: between 1
and the thread count it started with (never more). :func:`install_adaptive_threads` runs it
before each forward pass of a model, in the main thread (OpenMP thread counts are per calling
thread), which covers training, evaluation and the demo. Where /proc is missing (not Linux),
or with the environment variable ``MASK2FORMER_ADAPTIVE_THREADS=0``, threads stay as set.
The thread count can change the last bits of float results (reductions split differently), so
runs that must repeat bit for bit fix it: ``MASK2FORMER_ADAPTIVE_THREADS=0`` or one thread
(``OMP_NUM_THREADS=1``; the policy never goes above the count it started with).
Measured beside a busy process and idle in BENCHMARKS.md ("Threads beside other work").
"""
import logging
import os
import time

import torch

__all__ = ["AdaptiveThreads", "install_adaptive_threads"]

logger = logging.getLogger(__name__)

# Fields of /proc/stat's "cpu" line that count as busy: user, nice, system, irq, softirq, steal.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def _machine_jiffies():
    """(busy, total) CPU time of all cores since boot, in clock ticks."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    busy = sum(values[i] for i in _BUSY_FIELDS if i < len(values))
    return busy, sum(values[:8])


def _process_jiffies(pid):
    """utime + stime of a process in clock ticks, and its parent's pid; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12]), int(fields[1])


def _own_jiffies():
    """CPU time of this process and of its direct children (data loader workers)."""
    me = os.getpid()
    total = _process_jiffies(me)[0]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            stat = _process_jiffies(entry)
            if stat is not None and stat[1] == me:
                total += stat[0]
    return total


class AdaptiveThreads:
    """
    Set torch's intra-op threads to the cores that other programs leave idle.

    Args:
        max_threads (int): the most threads to use (default: torch's current count).
        interval (float): seconds between two measurements.
    """

    def __init__(self, max_threads=None, interval=1.0):
        self.max_threads = max_threads or torch.get_num_threads()
        self.interval = interval
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1
        )
        self._last = None

    @staticmethod
    def supported():
        """Whether the load can be measured here and the policy is not switched off."""
        return os.path.exists("/proc/stat") and os.environ.get(
            "MASK2FORMER_ADAPTIVE_THREADS", "1"
        ) != "0"

    def _sample(self):
        busy, total = _machine_jiffies()
        return time.monotonic(), busy, total, _own_jiffies()

    def threads_for(self, other_cores, current):
        """
        Threads to use when other programs keep ``other_cores`` cores busy and ``current``
        threads run: the free cores, rounded; one more than ``current`` only when at least 3/4
        of a core more is free (so a neighbour near a threshold does not flip the count).
        """
        free = self.cores - other_cores
        wanted = int(free + 0.5)
        if wanted > current and free < current + 0.75:
            wanted = current
        return max(1, min(self.max_threads, wanted))

    def update(self):
        """Measure the load if ``interval`` has passed, and set the thread count; returns it."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.interval:
            return torch.get_num_threads()
        sample = self._sample()
        previous, self._last = self._last, sample
        if previous is None:
            return torch.get_num_threads()
        total = sample[2] - previous[2]
        if total <= 0:
            return torch.get_num_threads()
        other_busy = (sample[1] - previous[1]) - (sample[3] - previous[3])
        other_cores = max(0.0, other_busy / total * self.cores)
        current = torch.get_num_threads()
        threads = self.threads_for(other_cores, current)
        if threads != current:
            logger.info(
                f"Other programs use {other_cores:.1f} of {self.cores} cores: "
                f"{threads} torch thread(s)"
            )
            torch.set_num_threads(threads)
        return threads


def install_adaptive_threads(model, max_threads=None):
    """
    Run :class:`AdaptiveThreads` before each forward pass of ``model`` (an ``nn.Module``), if
    the model is on the CPU.

    Returns:
        AdaptiveThreads or None (a model on another device, or not supported here: see the
        module docstring).
    """
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if not on_cpu or not AdaptiveThreads.supported():
        return None
    policy = AdaptiveThreads(max_threads)

    def before_forward(module, inputs):
        policy.update()  # returns None: the inputs stay as they are

    model.register_forward_pre_hook(before_forward)
    return policy
