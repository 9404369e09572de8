"""
Multi-process launching that also works on machines without GPUs, and under cluster launchers.

:func:`launch` has the signature and behaviour of Detectron2's ``detectron2.engine.launch``
and calls it whenever Detectron2 can run the job itself: with CUDA, with a single process, or
when the installed Detectron2 starts CPU workers on its own (current Detectron2 main picks the
Gloo backend when there is no GPU; Detectron2 v0.6 asserts CUDA and uses NCCL). Otherwise it
starts the same workers on the CPU, as Detectron2 main does: one process per "GPU", joined in
a Gloo process group, with Detectron2's per-machine process group, then ``main_func(*args)``.
While its workers run, SIGTERM / SIGUSR1 reach them (they stop together and checkpoint, see
``preemption.py``) and their requeue exit status becomes the launcher's.

:func:`run_launched_process` is the same worker set-up for a process that torchrun or srun
started (``cluster.py``): join the process group (NCCL on GPUs, Gloo on CPUs), Detectron2's
per-machine group, then ``main_func(*args)``.
"""
import contextlib
import importlib
import inspect
import logging
import multiprocessing
import os
import signal
import socket
import threading

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import DEFAULT_TIMEOUT
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

from .preemption import REQUEUE_EXIT_CODE, STOP_SIGNALS, TrainingStopped

__all__ = ["DEFAULT_TIMEOUT", "launch", "run_launched_process", "detectron2_launches_cpu_workers"]

logger = logging.getLogger(__name__)


def detectron2_launches_cpu_workers():
    """
    Whether the installed Detectron2's launcher runs multi-process jobs without CUDA, i.e. its
    worker chooses the Gloo backend (Detectron2 v0.6's always uses NCCL and asserts CUDA).
    """
    worker = getattr(importlib.import_module("detectron2.engine.launch"), "_distributed_worker",
                     None)
    try:
        return worker is not None and "gloo" in inspect.getsource(worker).lower()
    except (OSError, TypeError):
        return False


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None,
           args=(), timeout=DEFAULT_TIMEOUT):
    """
    Run ``main_func(*args)`` in ``num_gpus_per_machine`` processes on each of ``num_machines``
    machines; call it on every machine. Arguments are those of Detectron2's ``launch``; on a
    machine without CUDA, ``num_gpus_per_machine`` is the number of CPU worker processes.

    Args:
        main_func: the function every worker calls, ``main_func(*args)``; it must be picklable
            (a module-level function) when more than one process runs.
        num_gpus_per_machine (int): processes per machine (one per GPU, or CPU workers).
        num_machines (int): total number of machines.
        machine_rank (int): rank of this machine, in [0, num_machines).
        dist_url (str): address of the rendezvous, e.g. "tcp://10.0.0.1:29500" (the host is
            machine 0), or "auto" for a free port on 127.0.0.1 (single-machine jobs only).
        args (tuple): arguments of ``main_func``.
        timeout (timedelta): timeout of the workers' collective operations.
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        return main_func(*args)
    with _stop_signals_reach_workers():
        if torch.cuda.is_available() or detectron2_launches_cpu_workers():
            return d2_launch(main_func, num_gpus_per_machine, num_machines=num_machines,
                             machine_rank=machine_rank, dist_url=dist_url, args=args,
                             timeout=timeout)
        return _spawn_cpu_workers(main_func, num_gpus_per_machine, num_machines, machine_rank,
                                  dist_url, args, timeout)


def _spawn_cpu_workers(main_func, num_workers_per_machine, num_machines, machine_rank, dist_url,
                       args, timeout):
    """Detectron2 main's CPU workers: Gloo processes on this machine, then main_func(*args)."""
    world_size = num_machines * num_workers_per_machine
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError(
                "dist_url='auto' only works for single-machine jobs; pass --dist-url "
                "tcp://<address of machine 0>:<free port> on every machine."
            )
        dist_url = f"tcp://127.0.0.1:{_free_local_port()}"
    if dist_url is None:
        raise ValueError("launch: dist_url is needed for a multi-process job, e.g. 'auto'.")
    logger.info(
        "No CUDA device: starting %d CPU worker processes on this machine (Gloo backend).",
        num_workers_per_machine,
    )
    mp.spawn(
        _cpu_worker,
        nprocs=num_workers_per_machine,
        args=(main_func, world_size, num_workers_per_machine, machine_rank, dist_url, args,
              timeout),
        daemon=False,
    )


@contextlib.contextmanager
def _stop_signals_reach_workers():
    """
    In the process that spawned the workers: SIGTERM / SIGUSR1 are passed on to the workers
    instead of killing this process (a scheduler that signals only the process it started
    would otherwise leave them without the signal, or kill them mid-checkpoint), and a
    worker's exit with REQUEUE_EXIT_CODE exits this process with it too. Before any worker
    runs, the signal ends this process as it would have.
    """
    def forward(signum, frame):
        workers = multiprocessing.active_children()
        if not workers:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        for worker in workers:
            os.kill(worker.pid, signum)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS} if in_main_thread else {}
    try:
        yield
    except mp.ProcessExitedException as e:
        if e.exit_code == REQUEUE_EXIT_CODE:
            raise TrainingStopped() from None
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_launched_process(main_func, process, args=(), timeout=DEFAULT_TIMEOUT):
    """
    Run ``main_func(*args)`` in this process, one worker of a job that torchrun or srun started:
    join its process group (NCCL with CUDA, else Gloo), set up Detectron2's per-machine group,
    then call ``main_func``. The same ranks, groups and devices as Detectron2's launcher, so the
    run gives the results of ``--num-gpus``.

    Args:
        main_func: the function to run, ``main_func(*args)``.
        process (LaunchedProcess): this process's place in the job (see ``cluster.py``).
        args (tuple): arguments of ``main_func``.
        timeout (timedelta): timeout of the workers' collective operations.
    """
    if process.world_size == 1:
        return main_func(*args)
    backend = "gloo"
    if torch.cuda.is_available():
        backend = "nccl"
        # With one visible GPU per task (e.g. srun --gpus-per-task=1), it is device 0.
        torch.cuda.set_device(process.local_rank if torch.cuda.device_count() > 1 else 0)
    rendezvous = {"init_method": f"tcp://{process.master_addr}:{process.master_port}"}
    if process.store_prefix:
        agent_store = dist.TCPStore(process.master_addr, process.master_port,
                                    process.world_size, is_master=False, timeout=timeout)
        rendezvous = {"store": dist.PrefixStore(process.store_prefix, agent_store)}
    try:
        dist.init_process_group(backend=backend, world_size=process.world_size,
                                rank=process.rank, timeout=timeout, **rendezvous)
    except Exception:
        logger.error("Started by %s as rank %d of %d; process group store: %s:%d",
                     process.launcher, process.rank, process.world_size, process.master_addr,
                     process.master_port)
        raise
    _create_local_process_group(process.local_world_size)
    comm.synchronize()
    result = main_func(*args)
    dist.destroy_process_group()
    return result


def _free_local_port():
    """A TCP port that is free on 127.0.0.1 now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_worker(local_rank, main_func, world_size, num_workers_per_machine, machine_rank,
                dist_url, args, timeout):
    """One CPU worker: join the Gloo process group, set up the local group, run main_func."""
    global_rank = machine_rank * num_workers_per_machine + local_rank
    try:
        dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size,
                                rank=global_rank, timeout=timeout)
    except Exception:
        logger.error("Process group URL: %s", dist_url)
        raise
    _create_local_process_group(num_workers_per_machine)
    # A barrier right after init_process_group avoids a possible timeout of the first
    # collective (as in Detectron2's launcher).
    comm.synchronize()
    main_func(*args)


def _create_local_process_group(num_workers_per_machine):
    """
    Detectron2's per-machine process group (``comm.get_local_rank``, ``get_local_size``):
    ``comm.create_local_process_group`` on current Detectron2, ``comm._LOCAL_PROCESS_GROUP``
    (set by its launcher) on v0.6. Every worker must call this: new_group is collective.
    """
    if hasattr(comm, "create_local_process_group"):
        comm.create_local_process_group(num_workers_per_machine)
        return
    machine_rank = comm.get_rank() // num_workers_per_machine
    for i in range(comm.get_world_size() // num_workers_per_machine):
        ranks = list(range(i * num_workers_per_machine, (i + 1) * num_workers_per_machine))
        group = dist.new_group(ranks)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
