"""
Multi-process launching that also works on machines without GPUs.

:func:`launch` has the signature and behaviour of Detectron2's ``detectron2.engine.launch``
and calls it whenever Detectron2 can run the job itself: with CUDA, with a single process, or
when the installed Detectron2 starts CPU workers on its own (current Detectron2 main picks the
Gloo backend when there is no GPU; Detectron2 v0.6 asserts CUDA and uses NCCL). Otherwise it
starts the same workers on the CPU, as Detectron2 main does: one process per "GPU", joined in
a Gloo process group, with Detectron2's per-machine process group, then ``main_func(*args)``.
"""
import importlib
import inspect
import logging
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import DEFAULT_TIMEOUT
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

__all__ = ["DEFAULT_TIMEOUT", "launch", "detectron2_launches_cpu_workers"]

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
    if world_size == 1 or torch.cuda.is_available() or detectron2_launches_cpu_workers():
        return d2_launch(main_func, num_gpus_per_machine, num_machines=num_machines,
                         machine_rank=machine_rank, dist_url=dist_url, args=args,
                         timeout=timeout)
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
        num_gpus_per_machine,
    )
    mp.spawn(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args,
              timeout),
        daemon=False,
    )


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
