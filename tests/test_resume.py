"""
Kill -9 during training, then --resume: the run ends with exactly the weights of an
uninterrupted run (same seed, CPU). Real train_net.py processes on a tiny generated dataset.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mask2former.data.datasets.generated_shapes import generate_shapes_dataset

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "shapes" / "maskformer2_R18_shapes.yaml"
# 10 iterations of batch 2 on 64 px images; checkpoints after iterations 2, 5, 8 and final.
TINY = [
    "SEED", "7", "SOLVER.MAX_ITER", "10", "SOLVER.CHECKPOINT_PERIOD", "3",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "2", "INPUT.IMAGE_SIZE", "64",
    "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256", "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "False",
    "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "False",
]


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    generate_shapes_dataset(str(root / "generated" / "shapes"), seed=0, num_train=12, num_val=2,
                            size=64)
    return root


def _train(datasets_root, output_dir, num_workers, resume=False):
    """Start train_net.py on the tiny config; returns the Popen (stdout+stderr to a log file)."""
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets_root), OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="")
    args = [sys.executable, str(REPO / "train_net.py"), "--config-file", str(CONFIG)]
    args += ["--resume"] if resume else []
    args += TINY + ["OUTPUT_DIR", str(output_dir), "DATALOADER.NUM_WORKERS", str(num_workers)]
    log = open(output_dir.parent / f"{output_dir.name}{'_resume' if resume else ''}.log", "w")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = Path(log.name)
    return proc


def _finish(proc, what):
    if proc.wait(timeout=300) != 0:
        pytest.fail(f"{what} failed:\n{proc.log_path.read_text()[-3000:]}")


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _kill_after_first_checkpoint(proc, output_dir):
    """SIGKILL ``proc`` as soon as its first checkpoint (after iteration 2) is tagged."""
    last = output_dir / "last_checkpoint"
    deadline = time.time() + 240
    while not (last.exists() and last.read_text() == "model_0000002.pth"):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (output_dir / "model_final.pth").exists()


def test_kill9_then_resume_gives_the_weights_of_an_uninterrupted_run(datasets_root, tmp_path):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    straight.mkdir()
    crashed.mkdir()
    # The uninterrupted run reads data in the main process, the interrupted one with 2 workers:
    # each sample is a function of its stream position, not of the process that maps it.
    reference = _train(datasets_root, straight, num_workers=0)
    victim = _train(datasets_root, crashed, num_workers=2)
    try:
        _kill_after_first_checkpoint(victim, crashed)
        _finish(reference, "uninterrupted run")
    finally:
        for proc in (reference, victim):
            if proc.poll() is None:
                proc.kill()
    killed_at = (crashed / "last_checkpoint").read_text()
    assert killed_at in ("model_0000002.pth", "model_0000005.pth")

    _finish(_train(datasets_root, crashed, num_workers=2, resume=True), "resumed run")
    log = (tmp_path / "crashed_resume.log").read_text()
    start = int(killed_at[len("model_"):-len(".pth")]) + 1
    assert f"Training data stream starts at iteration {start} (position {2 * start}), seed 7" in log

    expected, got = _weights(straight / "model_final.pth"), _weights(crashed / "model_final.pth")
    assert expected.keys() == got.keys()
    differing = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not differing, f"{len(differing)} tensors differ after resume, e.g. {differing[:3]}"
    # ... and training did change the weights (the comparison is not between two inits).
    first = _weights(straight / "model_0000002.pth")
    assert any(not torch.equal(first[k], expected[k]) for k in expected)


def test_diverging_training_stops_with_a_clear_error(datasets_root, tmp_path):
    """An absurd learning rate: the predictions of iteration 1 are NaN; training stops there."""
    output = tmp_path / "diverged"
    output.mkdir()
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets_root), OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="")
    args = [sys.executable, str(REPO / "train_net.py"), "--config-file", str(CONFIG)] + TINY + [
        "OUTPUT_DIR", str(output), "DATALOADER.NUM_WORKERS", "0", "SOLVER.CHECKPOINT_PERIOD", "1",
        "SOLVER.BASE_LR", "1e30", "SOLVER.WARMUP_FACTOR", "1.0"]
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert ("FloatingPointError: HungarianMatcher: the matching cost of image 0 of the batch "
            "holds NaN or Inf" in proc.stderr + proc.stdout)
    assert (output / "last_checkpoint").read_text() == "model_0000000.pth"
