"""
Worker processes started by a cluster launcher instead of Detectron2's ``launch``.

``torchrun`` (PyTorch's elastic launcher, on one or several machines) and SLURM's ``srun``
start every worker process themselves and describe it in environment variables; Detectron2's
launcher knows neither and would start ``--num-gpus`` processes again inside each.
:func:`launched_process` reads those variables:

* torchrun: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
  ``MASTER_PORT`` (torchrun's own store when ``TORCHELASTIC_USE_AGENT_STORE``). A restarted
  worker keeps its keys in that store apart from the previous attempt's
  (:attr:`LaunchedProcess.store_prefix`): torchrun's default static rendezvous
  (``--master-addr`` / ``--master-port``) hands every attempt the same store, and the new
  workers would read the Gloo addresses of the lost ones and fail to connect;
* srun (a job step of several tasks, one task per GPU or CPU worker): ``SLURM_PROCID``,
  ``SLURM_STEP_NUM_TASKS`` (or ``SLURM_NTASKS``), ``SLURM_LOCALID``, the tasks per node
  (``SLURM_STEP_TASKS_PER_NODE``, ``SLURM_TASKS_PER_NODE`` or ``SLURM_NTASKS_PER_NODE``); the
  master is ``MASTER_ADDR``, else the first host of the step's node list
  (``scontrol show hostnames``, or the list parsed), on ``MASTER_PORT``, else on a port derived
  from ``SLURM_JOB_ID`` (the same in every task of the job).

:func:`launcher_restart` tells whether this is a launcher's second or later attempt at the job:
torchrun's ``TORCHELASTIC_RESTART_COUNT`` (``--max-restarts``) or SLURM's
``SLURM_RESTART_COUNT`` (a requeued job).
"""
import dataclasses
import os
import re
import shutil
import subprocess
from typing import Mapping, Optional

__all__ = ["LaunchedProcess", "LauncherRestart", "launched_process", "launcher_restart"]

_TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# Ports derived from SLURM_JOB_ID fall in [_SLURM_PORT_BASE, _SLURM_PORT_BASE + _SLURM_PORT_SPAN).
_SLURM_PORT_BASE, _SLURM_PORT_SPAN = 20000, 20000


@dataclasses.dataclass(frozen=True)
class LaunchedProcess:
    """
    One worker process of a job whose processes a cluster launcher started.

    Attributes:
        launcher: "torchrun" or "slurm".
        rank, world_size: global rank of this process and number of processes.
        local_rank, local_world_size: rank on this machine and processes per machine.
        master_addr, master_port: the store of the process group (hosted by rank 0, or by
            torchrun's agent).
        store_prefix: "" to join through ``tcp://master_addr:master_port``; else the prefix
            of this attempt's keys in torchrun's store, which its agent hosts.
    """

    launcher: str
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int
    store_prefix: str = ""


@dataclasses.dataclass(frozen=True)
class LauncherRestart:
    """A launcher's restart of the job: ``count`` >= 1, read from the variable ``variable``."""

    launcher: str
    variable: str
    count: int

    def __str__(self):
        return f"{self.launcher} restarted the job ({self.variable}={self.count})"


def launched_process(num_gpus=1, num_machines=1, environ=None) -> Optional[LaunchedProcess]:
    """
    This process as torchrun or srun started it, or None when Detectron2's launcher is to start
    the processes (no such launcher; or ``srun`` with one task per machine and
    ``--num-gpus`` / ``--num-machines``, Detectron2's way on SLURM).

    Args:
        num_gpus, num_machines: the command line's ``--num-gpus`` and ``--num-machines``.
        environ: the environment (default ``os.environ``).

    Raises:
        ValueError: the command line contradicts the launcher (e.g. ``--num-gpus 8`` under
            torchrun with 4 processes per machine), or the launcher's variables are unusable.
    """
    env = os.environ if environ is None else environ
    if all(key in env for key in _TORCHRUN_KEYS):
        process = _torchrun_process(env)
    elif "SLURM_PROCID" in env and ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env):
        tasks = _int(env, "SLURM_STEP_NUM_TASKS", default=None) or _int(env, "SLURM_NTASKS", 1)
        if tasks == 1 or (num_machines > 1 and num_machines == tasks):
            return None  # one process, or one task per machine that Detectron2 launches from
        if num_gpus > 1 or num_machines > 1:
            raise ValueError(
                f"srun started {tasks} tasks and each would start --num-gpus {num_gpus} processes "
                f"of --num-machines {num_machines}: either start one task per GPU (or CPU worker) "
                "and drop --num-gpus / --num-machines, or start one task per machine with "
                f"--num-machines {tasks} --machine-rank $SLURM_NODEID --dist-url "
                "tcp://<first host>:<port>."
            )
        process = _slurm_process(env, tasks)
    else:
        return None
    machines = process.world_size // process.local_world_size
    if num_gpus not in (1, process.local_world_size) or num_machines not in (1, machines):
        raise ValueError(
            f"{process.launcher} started {process.world_size} processes, "
            f"{process.local_world_size} per machine, but the command line asks for --num-gpus "
            f"{num_gpus} --num-machines {num_machines}: drop --num-gpus / --num-machines (the "
            "launcher starts the processes)."
        )
    return process


def launcher_restart(environ=None) -> Optional[LauncherRestart]:
    """
    The launcher's restart of this job (torchrun ``--max-restarts`` after a lost worker or
    machine, or a requeued SLURM job), or None on a first attempt.
    """
    env = os.environ if environ is None else environ
    for launcher, variable in (("torchrun", "TORCHELASTIC_RESTART_COUNT"),
                               ("SLURM", "SLURM_RESTART_COUNT")):
        count = _int(env, variable, 0)
        if count > 0:
            return LauncherRestart(launcher, variable, count)
    return None


def _torchrun_process(env):
    world_size = _int(env, "WORLD_SIZE")
    restart = _int(env, "TORCHELASTIC_RESTART_COUNT", 0)
    agent_store = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    return LaunchedProcess(
        launcher="torchrun",
        rank=_int(env, "RANK"),
        world_size=world_size,
        local_rank=_int(env, "LOCAL_RANK"),
        # torch.distributed.launch (deprecated) sets no LOCAL_WORLD_SIZE: one machine.
        local_world_size=_int(env, "LOCAL_WORLD_SIZE", world_size),
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        master_port=_int(env, "MASTER_PORT"),
        store_prefix=f"mask2former/restart_{restart}/" if agent_store and restart else "",
    )


def _slurm_process(env, world_size):
    rank = _int(env, "SLURM_PROCID")
    local_world_size = _slurm_tasks_per_node(env, world_size)
    node = _int(env, "SLURM_NODEID", rank // local_world_size)
    if node != rank // local_world_size:
        raise ValueError(
            f"SLURM task {rank} runs on node {node}, but the workers of a machine must have "
            f"consecutive ranks ({local_world_size} per node): start srun with "
            "--distribution=block (SLURM's default)."
        )
    port = _int(env, "MASTER_PORT", None) or (
        _SLURM_PORT_BASE + _int(env, "SLURM_JOB_ID", 0) % _SLURM_PORT_SPAN)
    return LaunchedProcess(
        launcher="slurm",
        rank=rank,
        world_size=world_size,
        local_rank=_int(env, "SLURM_LOCALID"),
        local_world_size=local_world_size,
        master_addr=env.get("MASTER_ADDR") or _first_host(_slurm_nodelist(env)),
        master_port=port,
    )


def _slurm_tasks_per_node(env, world_size):
    """
    Tasks per node, which must be the same on every node (Detectron2's local groups): the job
    step's own layout first, as a job's --ntasks-per-node (SLURM_NTASKS_PER_NODE) reaches the
    tasks of a step that may have asked for another.
    """
    for key in ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE"):
        if key in env:
            # e.g. "4(x2)" or "4,4" (4 tasks on each of 2 nodes), "4(x2),3" (uneven)
            counts = {int(m.group(1)) for m in re.finditer(r"(\d+)(\(x\d+\))?", env[key])}
            if len(counts) != 1 or world_size % next(iter(counts)):
                raise ValueError(
                    f"{key}={env[key]}: every node must run the same number of tasks (one per "
                    "GPU or CPU worker), e.g. srun --ntasks-per-node=N."
                )
            return counts.pop()
    return world_size


def _slurm_nodelist(env):
    for key in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        if env.get(key):
            return env[key]
    raise ValueError("SLURM: no node list (SLURM_STEP_NODELIST / SLURM_JOB_NODELIST) to find the "
                     "master host in; set MASTER_ADDR.")


def _first_host(nodelist):
    """
    The first host of a SLURM node list such as "gpu[003-005,9],cpu1": SLURM's own
    ``scontrol show hostnames`` where it is installed, else the list parsed ("gpu003").
    """
    if shutil.which("scontrol"):
        hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True,
                               capture_output=True, text=True).stdout.split()
        if hosts:
            return hosts[0]
    depth, end = 0, len(nodelist)
    for i, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = i
            break
    # In each bracket the first range's start: "rack[1-2]-n[07-9]" -> "rack1-n07".
    return re.sub(r"\[([^\],-]*)[^\]]*\]", r"\1", nodelist[:end])


def _int(env: Mapping[str, str], key, default=...):
    if key not in env:
        if default is ...:
            raise ValueError(f"The launcher's environment lacks {key}.")
        return default
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(f"Environment variable {key}={env[key]!r} is not an integer.") from None
