"""
Little work lost when a cluster takes a machine away: checkpoints on a clock, and a clean stop on
the signals schedulers send first.

Detectron2 saves every SOLVER.CHECKPOINT_PERIOD iterations only, and a SIGTERM kills the worker
where it is: everything since the last checkpoint is lost, and on several workers nothing makes
them stop at the same iteration. :class:`TimedAndSignalCheckpointer` adds:

* SOLVER.CHECKPOINT_PERIOD_MINUTES: a checkpoint when that many minutes have passed since the
  last one (of either kind). Each replaces the previous timed one, so they do not fill the disk;
  the periodic ones stay as in Detectron2.
* SIGTERM or SIGUSR1 (what SLURM, Kubernetes or a spot-instance agent send before taking the
  machine; SLURM's ``--signal=USR1@<seconds>`` before the time limit): every worker finishes
  its iteration, all stop after the same one, the main process writes a checkpoint of it, and
  the job exits with :data:`REQUEUE_EXIT_CODE`.

All workers agree on both through one all-reduce of two flags per iteration (rank 0's clock
decides the time; a signal on any worker stops all), so every rank takes the same decision at the
same iteration. The checkpoints are written at the point of the iteration where Detectron2's
``PeriodicCheckpointer`` writes, so resuming from one (``--resume``, or automatically after a
launcher's restart) continues exactly as the uninterrupted run.
"""
import logging
import os
import signal
import threading
import time

import torch
import torch.distributed as dist

from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["REQUEUE_EXIT_CODE", "TrainingStopped", "TimedAndSignalCheckpointer"]

logger = logging.getLogger(__name__)

# EX_TEMPFAIL of sysexits.h, "temporary failure, the user is invited to retry": the exit status
# of a job stopped by SIGTERM / SIGUSR1 after writing its checkpoint. A SLURM batch script
# requeues on it (README, "Clusters"); torchrun restarts on any non-zero status.
REQUEUE_EXIT_CODE = 75

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

# File in the output folder naming the last timed checkpoint, the one the next replaces.
LAST_TIMED_CHECKPOINT_FILE = "last_timed_checkpoint"


class TrainingStopped(SystemExit):
    """Training stopped on a signal after its checkpoint was written; exits the process with
    :data:`REQUEUE_EXIT_CODE` (a ``SystemExit``, so Detectron2 logs no error)."""

    def __init__(self):
        super().__init__(REQUEUE_EXIT_CODE)


class TimedAndSignalCheckpointer(HookBase):
    """
    Checkpoints every ``period_minutes`` and on SIGTERM / SIGUSR1, agreed by all workers (see the
    module docstring). Place it after Detectron2's ``PeriodicCheckpointer`` and before its
    ``EvalHook``: a signal received before an iteration's evaluation stops without it; one
    received during an evaluation takes effect after it and the next iteration (a long periodic
    evaluation can outlast a scheduler's grace period: keep TEST.EVAL_PERIOD evaluations short,
    or evaluate after training).
    """

    def __init__(self, period_minutes, checkpoint_period, *, clock=time.monotonic):
        """
        Args:
            period_minutes (float): SOLVER.CHECKPOINT_PERIOD_MINUTES; 0 for no timed checkpoints.
            checkpoint_period (int): SOLVER.CHECKPOINT_PERIOD, the iterations after which
                Detectron2's PeriodicCheckpointer saves (this hook then does not save again, and
                the next timed checkpoint is due ``period_minutes`` after it).
            clock: seconds of a monotonic clock, ``time.monotonic`` (rank 0's decides).
        """
        if period_minutes < 0:
            raise ValueError(f"SOLVER.CHECKPOINT_PERIOD_MINUTES={period_minutes} must be >= 0 "
                             "(0: no checkpoints on a clock).")
        self._period_seconds = 60.0 * period_minutes
        self._checkpoint_period = checkpoint_period
        self._clock = clock
        self._received = None  # name of the first stop signal received
        self._previous_handlers = {}
        self._last_save = None

    def before_train(self):
        self._last_save = self._clock()
        if threading.current_thread() is not threading.main_thread():
            logger.warning("Training runs outside the main thread: SIGTERM / SIGUSR1 cannot be "
                           "caught, and stop training without a checkpoint.")
            return
        for signum in STOP_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def after_train(self):
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def _on_signal(self, signum, frame):
        if self._received is None:
            self._received = signal.Signals(signum).name

    def after_step(self):
        iteration = self.trainer.iter
        if iteration + 1 >= self.trainer.max_iter:
            if self._received:
                logger.info(f"{self._received} at the last iteration: training ends normally.")
            return
        periodic = (iteration + 1) % self._checkpoint_period == 0
        if periodic:
            self._last_save = self._clock()  # Detectron2's PeriodicCheckpointer just saved
        stop, timed = self._agree()
        if (stop or timed) and not periodic:
            self._save(iteration, timed and not stop)
        if stop:
            logger.info(f"Stopping after iteration {iteration} on "
                        f"{self._received or 'a signal to another worker'}: resume with "
                        f"--resume (automatic after a launcher's restart); exit status "
                        f"{REQUEUE_EXIT_CODE}.")
            comm.synchronize()  # no worker leaves before the checkpoint is written
            raise TrainingStopped()

    def _agree(self):
        """(stop, timed checkpoint due), the same on every rank; one process asks no one."""
        stop = self._received is not None
        timed = (self._period_seconds > 0 and comm.is_main_process()
                 and self._clock() - self._last_save >= self._period_seconds)
        if comm.get_world_size() == 1:
            return stop, timed
        flags = torch.tensor([stop, timed], dtype=torch.int32)
        # Detectron2's Gloo group of all ranks: a CPU tensor whatever the main backend.
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=comm._get_global_gloo_group())
        return bool(flags[0]), bool(flags[1])

    def _save(self, iteration, timed):
        checkpointer = self.trainer.checkpointer
        name = f"model_{iteration:07d}"
        checkpointer.save(name, iteration=iteration)
        self._last_save = self._clock()
        if not (timed and comm.is_main_process()):
            return
        # The timed checkpoints replace each other, also those of the run before a restart: the
        # last one's name is kept in a file beside them.
        marker = os.path.join(checkpointer.save_dir, LAST_TIMED_CHECKPOINT_FILE)
        previous = None
        if os.path.exists(marker):
            with open(marker) as f:
                previous = f.read().strip()
        with open(marker + ".tmp", "w") as f:
            f.write(f"{name}.pth")
        os.replace(marker + ".tmp", marker)
        if previous and previous != f"{name}.pth":
            previous = os.path.join(checkpointer.save_dir, previous)
            if os.path.exists(previous):
                os.remove(previous)
