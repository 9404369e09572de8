"""
train_net_video.py: two training iterations with the final evaluation, --eval-only, --resume,
and two CPU worker processes (--num-gpus 2, or torchrun), on generated videos in the
YouTube-VIS layout.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from detectron2.engine import default_argument_parser
from video_helpers import small_video_config

import train_net_video
from mask2former_video.data_video.datasets.generated_shapes_video import (
    generate_shapes_video_dataset,
    register_generated_shapes_video,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny generated videos under a datasets root, and the yaml of a tiny video model."""
    root = tmp_path_factory.mktemp("train_net_video")
    videos = root / "datasets" / "generated" / "shapes_video"
    generate_shapes_video_dataset(str(videos), seed=2, num_train=3, num_val=2, num_frames=4,
                                  size=64)
    register_generated_shapes_video(str(videos))
    cfg = small_video_config(num_classes=3, num_queries=6, dec_layers=2, num_frames=2,
                             test_dataset="shapes_video_val")
    cfg.DATASETS.TRAIN = ("shapes_video_train",)
    cfg.INPUT.MIN_SIZE_TRAIN = (48, 64)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice_by_clip"
    cfg.INPUT.RANDOM_FLIP = "flip_by_clip"
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.INPUT.SAMPLING_FRAME_RANGE = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.SOLVER.MAX_ITER = 2
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.CHECKPOINT_PERIOD = 1000
    cfg.SOLVER.AMP.ENABLED = False
    config = root / "video.yaml"
    config.write_text(cfg.dump())
    yield root, config
    register_generated_shapes_video("datasets/generated/shapes_video")


def _main(config, output, *flags):
    args = default_argument_parser().parse_args(
        ["--config-file", str(config), *flags, "OUTPUT_DIR", str(output)])
    return train_net_video.main(args)


def test_two_iterations_then_evaluation(setup):
    root, config = setup
    _main(config, root / "out")
    metrics = [json.loads(line) for line in (root / "out" / "metrics.json").read_text()
               .splitlines()]
    assert [m["iteration"] for m in metrics if "loss_dice" in m] == [1]  # logged at the end
    results = {k.split("/", 1)[1]: v for k, v in metrics[-1].items() if k.startswith("segm/")}
    assert 0.0 <= results["AP"] <= 100.0 and "AR10" in results
    submission = json.loads((root / "out" / "inference" / "shapes_video_val" / "results.json")
                            .read_text())
    assert {entry["video_id"] for entry in submission} == {1, 2}
    assert all(len(entry["segmentations"]) == 4 for entry in submission)

    evaluated = _main(config, root / "eval", "--eval-only", "MODEL.WEIGHTS",
                      str(root / "out" / "model_final.pth"))
    assert dict(evaluated["segm"]) == pytest.approx(results, nan_ok=True)

    _main(config, root / "out", "--resume", "SOLVER.MAX_ITER", "3")
    log = (root / "out" / "log.txt").read_text()
    assert "Starting training from iteration 2" in log


@pytest.mark.parametrize("launcher", ["num_gpus", "torchrun"])
def test_two_cpu_worker_processes(setup, tmp_path, launcher):
    """Started by Detectron2's launcher (--num-gpus 2), or by torchrun."""
    root, config = setup
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", GLOO_SOCKET_IFNAME="lo",
               OMP_NUM_THREADS="1", DETECTRON2_DATASETS=str(root / "datasets"))
    start = {"num_gpus": [sys.executable, "train_net_video.py", "--num-gpus", "2",
                          "--dist-url", "auto"],
             "torchrun": [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--standalone", "train_net_video.py"]}[launcher]
    proc = subprocess.run(
        [*start, "--config-file", str(config), "OUTPUT_DIR", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "log.txt.rank1").exists()
    submission = json.loads((tmp_path / "inference" / "shapes_video_val" / "results.json")
                            .read_text())
    assert {entry["video_id"] for entry in submission} == {1, 2}  # gathered from both workers
