"""
train_net.py under cluster launchers, and recovery without a person: real torchrun agents and
real processes with SLURM's environment, joined by Gloo on 127.0.0.1, on a tiny generated
dataset. Every run is compared with the same training started by ``--num-gpus 2``: torchrun and
srun give the same ranks, data and collectives, so the weights are bit-identical, also after a
worker was killed and the job restarted or requeued.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from detectron2.engine import HookBase, PeriodicCheckpointer, SimpleTrainer

from mask2former.checkpoint import MaskFormerCheckpointer
from mask2former.data.datasets.generated_shapes import generate_shapes_dataset
from mask2former.engine.cluster import (
    LaunchedProcess,
    _first_host,
    launched_process,
    launcher_restart,
)
from mask2former.engine.preemption import (
    REQUEUE_EXIT_CODE,
    TimedAndSignalCheckpointer,
    TrainingStopped,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "shapes" / "maskformer2_R18_shapes.yaml"
MAX_ITER = 10
# Batch 2 (one image per worker) of 64 px images; periodic checkpoints after iterations 2, 5, 8;
# evaluation of the semantic and instance outputs (COCO mask AP) on 4 val images.
TINY = [
    "SEED", "7", "SOLVER.MAX_ITER", str(MAX_ITER), "SOLVER.CHECKPOINT_PERIOD", "3",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "0", "SOLVER.OPTIMIZER", "SGD",
    "SOLVER.BASE_LR", "0.05", "INPUT.IMAGE_SIZE", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8",
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256", "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "False",
    "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True", "DATALOADER.NUM_WORKERS", "0",
]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TIMEOUT = 300


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The environment of the runs, and the reference: the training started by --num-gpus 2."""
    root = tmp_path_factory.mktemp("cluster")
    generate_shapes_dataset(str(root / "datasets" / "generated" / "shapes"), seed=0,
                            num_train=8, num_val=4, size=64)
    env = dict(os.environ, DETECTRON2_DATASETS=str(root / "datasets"), CUDA_VISIBLE_DEVICES="",
               GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    reference = root / "num_gpus_2"
    _wait(_start(root, "num_gpus_2", [sys.executable], env,
                 opts=["--num-gpus", "2", "--dist-url", "auto"]))
    return root, env, reference


def _start(root, name, launcher, env, opts=()):
    """
    ``launcher train_net.py`` on TINY + ``opts`` into ``root/<name up to a dot>``; ``opts``
    may start with train_net.py's flags.
    """
    cmd = [*launcher, str(REPO / "train_net.py"), "--config-file", str(CONFIG), *opts, *TINY,
           "OUTPUT_DIR", str(root / name.split(".")[0])]
    log = root / f"{name}.log"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def _wait(proc, expected_status=0):
    try:
        status = proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status == expected_status, f"exit status {status}:\n{proc.log.read_text()[-5000:]}"


def _weights(output):
    return torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)["model"]


def _assert_same_weights(output, reference):
    expected, got = _weights(reference), _weights(output)
    assert expected.keys() == got.keys()
    differing = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:3]}"


def _final_metrics(output):
    """The last value of every metric in metrics.json (losses, then evaluation results)."""
    metrics = {}
    for line in (output / "metrics.json").read_text().splitlines():
        metrics.update(json.loads(line))
    return metrics


def _worker_pid(launcher_pid, rank):
    """Pid of torchrun's worker process of ``rank``, a child of the torchrun process."""
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher_pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no worker of rank {rank} under torchrun (pid {launcher_pid})")


def _wait_for_checkpoint(proc, output, name):
    """Wait until ``output/last_checkpoint`` names ``name`` (bounded)."""
    last, deadline = output / "last_checkpoint", time.time() + TIMEOUT
    while not (last.exists() and last.read_text() == name):
        assert proc.poll() is None, f"ended before {name}:\n{proc.log.read_text()[-5000:]}"
        assert time.time() < deadline, f"no {name} within {TIMEOUT} s"
        time.sleep(0.05)


# ------------------------------------------------------------------- launches, same as --num-gpus
def test_torchrun_two_processes_give_the_losses_and_weights_of_num_gpus_2(cluster):
    root, env, reference = cluster
    _wait(_start(root, "torchrun", [*TORCHRUN, "--nproc-per-node", "2", "--master-addr",
                                    "127.0.0.1", "--master-port", str(_free_port())], env))
    _assert_same_weights(root / "torchrun", reference)
    losses = [{k: v for k, v in _final_metrics(run).items() if k.startswith("loss_")}
              for run in (reference, root / "torchrun")]
    assert len(losses[0]) == 12 and losses[1] == losses[0]
    assert "Rank of current process: 1. World size: 2" in (
        root / "torchrun" / "log.txt.rank1").read_text()


def test_two_torchrun_agents_rendezvous_train_and_evaluate(cluster):
    """Two "machines" (one torchrun agent of one worker each) meet at a c10d rendezvous."""
    root, env, reference = cluster
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "two_nodes"]
    agents = [_start(root, f"two_nodes.agent{i}", [*TORCHRUN, *rendezvous], env)
              for i in range(2)]
    for agent in agents:
        _wait(agent)
    _assert_same_weights(root / "two_nodes", reference)
    metrics, expected = _final_metrics(root / "two_nodes"), _final_metrics(reference)
    evaluated = {k: v for k, v in expected.items() if k.startswith(("segm/", "bbox/", "sem_seg/"))}
    assert {"segm/AP", "bbox/AP", "sem_seg/mIoU"} <= evaluated.keys()
    assert {k: metrics[k] for k in evaluated} == pytest.approx(evaluated, nan_ok=True)
    assert "COCO AP computed by faster-coco-eval" in (root / "two_nodes" / "log.txt").read_text()


# ------------------------------------------------------------------------------------ recovery
def test_a_killed_worker_is_restarted_by_torchrun_and_the_run_ends_as_if_uninterrupted(cluster):
    root, env, reference = cluster
    output = root / "sigkill"
    torchrun = _start(root, "sigkill", [*TORCHRUN, "--nproc-per-node", "2", "--max-restarts",
                                        "1", "--master-port", str(_free_port())], env)
    try:
        _wait_for_checkpoint(torchrun, output, "model_0000002.pth")
        os.kill(_worker_pid(torchrun.pid, rank=1), signal.SIGKILL)
    finally:
        _wait(torchrun)
    log = (output / "log.txt").read_text()
    assert "torchrun restarted the job (TORCHELASTIC_RESTART_COUNT=1): resuming" in log
    restarted_at = int(log.split("Starting training from iteration ")[-1].split()[0])
    assert 3 <= restarted_at < MAX_ITER
    _assert_same_weights(output, reference)


def _srun_tasks(root, name, env, restart_counts):
    """
    The two tasks of an srun job step on one node, as SLURM's environment describes them, with
    SLURM_RESTART_COUNT ``restart_counts[rank]``.
    """
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2",
             "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_NODEID": "0",
             "SLURM_STEP_NODELIST": "localhost", "MASTER_PORT": str(_free_port())}
    return [_start(root, f"{name}.task{rank}", [sys.executable], dict(
        env, **slurm, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank),
        SLURM_RESTART_COUNT=str(restart_counts[rank])),
        opts=["SOLVER.CHECKPOINT_PERIOD_MINUTES", "1e-6"]) for rank in range(2)]


def test_sigterm_stops_all_srun_tasks_with_a_checkpoint_and_the_requeued_job_resumes(cluster):
    """
    SIGTERM to one task: both stop after the same iteration, the main one writes its
    checkpoint, both exit with the requeue status; the requeued job (SLURM_RESTART_COUNT=1)
    resumes by itself and ends with the uninterrupted weights. A checkpoint on the clock after
    every iteration (CHECKPOINT_PERIOD_MINUTES) shows when training runs; each replaces the
    previous one.
    """
    root, env, reference = cluster
    output = root / "sigterm"
    tasks = _srun_tasks(root, "sigterm", env, restart_counts=(0, 0))
    try:
        _wait_for_checkpoint(tasks[0], output, "model_0000000.pth")
        tasks[1].send_signal(signal.SIGTERM)
    finally:
        for task in tasks:
            _wait(task, expected_status=REQUEUE_EXIT_CODE)
    rank1_log = (output / "log.txt.rank1").read_text()
    stopped_at = int(rank1_log.split("Stopping after iteration ")[1].split()[0])
    assert f"Stopping after iteration {stopped_at} on SIGTERM" in rank1_log
    assert (f"Stopping after iteration {stopped_at} on a signal to another worker"
            in (output / "log.txt").read_text())
    assert 0 < stopped_at < MAX_ITER - 1
    checkpoint = f"model_{stopped_at:07d}.pth"
    assert (output / "last_checkpoint").read_text() == checkpoint
    assert torch.load(output / checkpoint, weights_only=False)["iteration"] == stopped_at
    # Periodic checkpoints (after iterations 2, 5, 8) stay; timed ones replace each other.
    periodic = {f"model_{i:07d}.pth" for i in (2, 5, 8) if i <= stopped_at}
    kept = {p.name for p in output.glob("model_*.pth")}
    assert periodic | {checkpoint} <= kept and len(kept - periodic) <= 2

    # Only task 0 is told of the restart, as when a machine replaces a lost one: all resume.
    for task in _srun_tasks(root, "sigterm.requeued", env, restart_counts=(1, 0)):
        _wait(task)
    log, rank1_log = (output / "log.txt").read_text(), (output / "log.txt.rank1").read_text()
    assert "SLURM restarted the job (SLURM_RESTART_COUNT=1): resuming" in log
    assert "The launcher restarted the job (other workers): resuming" in rank1_log
    for rank_log in (log, rank1_log):
        assert f"Starting training from iteration {stopped_at + 1}" in rank_log
    _assert_same_weights(output, reference)


STOPPING_WORKERS = """
import signal, sys, time
from pathlib import Path
from mask2former.engine import REQUEUE_EXIT_CODE, launch
from detectron2.utils import comm

def stop(signum, frame):  # as a worker's trainer does after writing its checkpoint
    Path(sys.argv[1], f"rank{comm.get_rank()}").write_text(signal.Signals(signum).name)
    sys.exit(REQUEUE_EXIT_CODE)

def worker():
    signal.signal(signal.SIGTERM, stop)
    Path(sys.argv[1], f"ready{comm.get_rank()}").touch()
    time.sleep(120)

if __name__ == "__main__":
    launch(worker, 2, dist_url="auto")
"""


def test_sigterm_to_the_num_gpus_process_reaches_its_workers_and_its_status_is_theirs(
        cluster, tmp_path):
    """A scheduler may signal only the process it started: it passes SIGTERM on."""
    _, env, _ = cluster
    script = tmp_path / "stopping_workers.py"
    script.write_text(STOPPING_WORKERS)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], cwd=REPO, env=env)
    try:
        deadline = time.time() + TIMEOUT
        while not all((tmp_path / f"ready{rank}").exists() for rank in range(2)):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == REQUEUE_EXIT_CODE
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [(tmp_path / f"rank{rank}").read_text() for rank in range(2)] == ["SIGTERM"] * 2


# ------------------------------------------------- the checkpoint hook in one process, by itself
class _Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, batch):
        return {"loss": self.linear(batch).pow(2).mean()}


def _one_process_trainer(output, checkpoint_period, timed_hook, *hooks):
    """Detectron2's SimpleTrainer of a tiny model with Detectron2's PeriodicCheckpointer of
    ``checkpoint_period`` over 10 iterations, then ``timed_hook`` and ``hooks``."""
    model = _Regression()
    data = iter(lambda: torch.ones(4, 2), None)
    trainer = SimpleTrainer(model, data, torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.checkpointer = MaskFormerCheckpointer(model, str(output))
    trainer.register_hooks([PeriodicCheckpointer(trainer.checkpointer, checkpoint_period,
                                                 max_iter=10), timed_hook, *hooks])
    return trainer


def test_timed_checkpoints_are_due_a_period_after_the_last_checkpoint_of_either_kind(tmp_path):
    """A clock of 25 s per iteration and a period of 1 minute: due 3 iterations after the last
    checkpoint, so after iteration 3 (the start: 0), not 6 (the periodic one after 4 restarts
    the clock) but 7, replacing the one after 3."""
    trainer = None
    hook = TimedAndSignalCheckpointer(1.0, 5, clock=lambda: 25.0 * trainer.iter)
    trainer = _one_process_trainer(tmp_path, 5, hook)
    trainer.train(0, 10)
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == [
        "model_0000004.pth", "model_0000007.pth", "model_0000009.pth", "model_final.pth"]


def test_a_timed_checkpoint_replaces_the_one_of_the_run_before_a_restart(tmp_path):
    """The first run leaves its timed checkpoint after iteration 7; the restarted one (a new
    process, from iteration 5) writes one after iteration 8, which replaces it."""
    for start in (0, 5):
        trainer = None
        hook = TimedAndSignalCheckpointer(1.0, 5, clock=lambda: 25.0 * trainer.iter)
        trainer = _one_process_trainer(tmp_path, 5, hook)
        trainer.train(start, 10)
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == [
        "model_0000004.pth", "model_0000008.pth", "model_0000009.pth", "model_final.pth"]


def test_a_signal_stops_one_process_after_its_iteration_with_a_checkpoint(tmp_path):
    class Preempt(HookBase):
        def after_step(self):
            if self.trainer.iter == 2:
                os.kill(os.getpid(), signal.SIGUSR1)

    trainer = _one_process_trainer(tmp_path, 5, TimedAndSignalCheckpointer(0, 5), Preempt())
    handler = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(TrainingStopped) as stopped:
        trainer.train(0, 10)
    assert stopped.value.code == REQUEUE_EXIT_CODE
    assert signal.getsignal(signal.SIGUSR1) is handler  # restored after training
    # The signal came after the hook's turn at iteration 2: it stops after iteration 3.
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000003.pth"
    assert torch.load(tmp_path / "model_0000003.pth", weights_only=False)["iteration"] == 3


# ------------------------------------------------------------ the launchers' environments, parsed
TORCHRUN_ENV = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
SRUN_ENV = {"SLURM_JOB_ID": "123456", "SLURM_STEP_ID": "0", "SLURM_PROCID": "5",
            "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NTASKS": "8",
            "SLURM_STEP_TASKS_PER_NODE": "4(x2)", "SLURM_STEP_NODELIST": "gpu[017-018]"}


def test_torchrun_environment_and_restarts():
    assert launched_process(environ={}) is None
    assert launched_process(environ=TORCHRUN_ENV) == LaunchedProcess(
        "torchrun", 3, 4, 1, 2, "10.0.0.1", 29500)
    # --num-gpus may repeat torchrun's processes per machine, not contradict them.
    assert launched_process(2, 2, environ=TORCHRUN_ENV).rank == 3
    with pytest.raises(ValueError, match="drop --num-gpus"):
        launched_process(8, environ=TORCHRUN_ENV)
    restarted = dict(TORCHRUN_ENV, TORCHELASTIC_RESTART_COUNT="2",
                     TORCHELASTIC_USE_AGENT_STORE="True")
    assert launched_process(environ=restarted).store_prefix == "mask2former/restart_2/"
    assert str(launcher_restart(restarted)) == (
        "torchrun restarted the job (TORCHELASTIC_RESTART_COUNT=2)")
    assert launcher_restart(TORCHRUN_ENV) is None
    assert launcher_restart({"SLURM_RESTART_COUNT": "1"}).launcher == "SLURM"


def test_srun_environment():
    process = launched_process(environ=SRUN_ENV)
    assert process == LaunchedProcess("slurm", 5, 8, 1, 4, "gpu017", 20000 + 123456 % 20000)
    chosen = launched_process(environ=dict(SRUN_ENV, MASTER_ADDR="head", MASTER_PORT="1234"))
    assert (chosen.master_addr, chosen.master_port) == ("head", 1234)
    # Detectron2's way on SLURM: one task per machine, each starting --num-gpus processes.
    assert launched_process(8, 8, environ=SRUN_ENV) is None
    with pytest.raises(ValueError, match="one task per GPU"):
        launched_process(8, environ=SRUN_ENV)
    with pytest.raises(ValueError, match="same number of tasks"):
        launched_process(environ=dict(SRUN_ENV, SLURM_STEP_TASKS_PER_NODE="4(x1),3"))
    with pytest.raises(ValueError, match="--distribution=block"):
        launched_process(environ=dict(SRUN_ENV, SLURM_NODEID="0"))
    # The step's layout, not the job's --ntasks-per-node that its tasks inherit.
    assert launched_process(environ=dict(SRUN_ENV, SLURM_NTASKS_PER_NODE="8")) == process
    # The batch script itself (no job step) and one-task steps run as one process.
    batch = {k: v for k, v in SRUN_ENV.items() if k != "SLURM_STEP_ID"}
    assert launched_process(environ=batch) is None
    assert launched_process(environ=dict(SRUN_ENV, SLURM_NTASKS="1")) is None


@pytest.mark.parametrize("nodelist, first", [
    ("gpu[017-018]", "gpu017"), ("node1,node2", "node1"), ("a[3,5-7],b1", "a3"),
    ("rack[1-2]-n[07-9]", "rack1-n07"), ("localhost", "localhost"),
])
def test_first_host_of_a_slurm_node_list(nodelist, first):
    assert _first_host(nodelist) == first
