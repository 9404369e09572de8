#!/usr/bin/env python
"""
The main job: Mask2Former end to end on the generated shapes dataset, in minutes on a CPU.

1. generate the dataset (skipped when the same version, seed and sizes are already on disk);
2. train one model for panoptic, instance and semantic segmentation with train_net.py's Trainer;
3. evaluate it on the val split (PQ, mask AP, mIoU);
4. run demo/demo.py on val images and on a generated video clip;
5. plot the training curves, write the metrics JSON and print where everything is.

    .venv/bin/python tools/main_job.py [--output output/main_job] [--iters N] [--quick]
"""
import argparse
import importlib
import json
import logging
import os
import subprocess
import sys
import time

# OpenMP threads that spin long while waiting make training several times slower whenever another
# program shares the CPU; never spinning makes it slower on an idle one. Measured per iteration on
# 2 cores, 2 threads: idle 0.21 s (default spin) / 0.23 s (this) / 0.30 s (OMP_WAIT_POLICY=PASSIVE);
# beside one busy process 2.6 s (default spin) / 0.61 s (this). OpenMP reads it when torch loads.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, "demo"))

import torch  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from mask2former.config import get_maskformer2_cfg  # noqa: E402
from mask2former.data.image_io import read_image  # noqa: E402
from mask2former.data.datasets.generated_shapes import (  # noqa: E402
    default_shapes_root,
    generate_shapes_dataset,
    register_generated_shapes,
    render_video,
)

DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "shapes", "maskformer2_R18_shapes.yaml")
logger = logging.getLogger("main_job")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/main_job", help="folder for all outputs")
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, help="model and training config")
    parser.add_argument(
        "--data-root",
        help=f"dataset folder (default {default_shapes_root()}, with --quick: <that>_quick)",
    )
    parser.add_argument("--iters", type=int, help="training iterations (default: the config's)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run (small dataset, a few iterations) that checks the whole pipeline",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated dataset")
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads (default: torch's, one per core)",
    )
    return parser


# Sizes of a full and of a --quick run.
FULL = {"num_train": 2000, "num_val": 100, "iters": None, "demo_images": 6, "video_frames": 48}
QUICK = {"num_train": 32, "num_val": 8, "iters": 4, "demo_images": 3, "video_frames": 8}


def build_cfg(args, sizes, output, load_cfg=get_maskformer2_cfg):
    cfg = load_cfg(args.config_file)
    cfg.OUTPUT_DIR = output
    iters = args.iters or sizes["iters"]
    if iters:
        cfg.SOLVER.MAX_ITER = iters
        cfg.SOLVER.WARMUP_ITERS = min(cfg.SOLVER.WARMUP_ITERS, iters)
        cfg.SOLVER.STEPS = tuple(s for s in cfg.SOLVER.STEPS if s < iters)
    cfg.SOLVER.CHECKPOINT_PERIOD = cfg.SOLVER.MAX_ITER + 1  # only model_final.pth
    cfg.TEST.EVAL_PERIOD = 0  # the trainer evaluates once, after the last iteration
    cfg.freeze()
    return cfg


def train_and_evaluate(cfg, trainer_module="train_net"):
    """
    Train with the Trainer of ``trainer_module`` (train_net.py, or train_net_video.py); its final
    evaluation returns the metrics dict. The global RNGs (model initialization) are seeded with
    cfg.SEED first, as train_net.py's Detectron2 ``default_setup`` does, so that runs repeat
    (with the same thread count).
    """
    from detectron2.utils.env import seed_all_rng

    Trainer = importlib.import_module(trainer_module).Trainer

    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    # The trainer's final evaluation (Detectron2's EvalHook after the last iteration).
    results = getattr(trainer, "_last_eval_results", None)
    if not results:
        results = Trainer.test(cfg, trainer.model)
    return results, time.perf_counter() - start


def summarize_metrics(results):
    """The three headline numbers (percent) from the evaluators' result dict."""
    missing = [k for k in ("panoptic_seg", "segm", "sem_seg") if k not in results]
    if missing:
        raise RuntimeError(
            f"Evaluation gave no {missing} results (got {sorted(results)}): the config must enable "
            "MODEL.MASK_FORMER.TEST.PANOPTIC_ON, INSTANCE_ON and SEMANTIC_ON"
        )
    return {
        "PQ": results["panoptic_seg"]["PQ"],
        "mask_AP": results["segm"]["AP"],
        "mIoU": results["sem_seg"]["mIoU"],
    }


def read_training_metrics(output):
    """Detectron2's metrics.json (one JSON object per logged iteration) as a list of dicts."""
    with open(os.path.join(output, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_training(records, headline, path, title=None):
    """
    Loss curves and learning rate over iterations, with the final metrics in the title (or
    ``title``), written to ``path``. The figure is made without pyplot, so that the caller's
    matplotlib backend (e.g. a notebook's) stays as it is.
    """
    from matplotlib.figure import Figure

    records = [r for r in records if "total_loss" in r]
    iters = [r["iteration"] + 1 for r in records]
    fig = Figure(figsize=(11, 4))
    ax_loss, ax_lr = fig.subplots(1, 2)
    for key, label in (
        ("total_loss", "total (all layers)"),
        ("loss_ce", "class (last layer)"),
        ("loss_mask", "mask BCE (last layer)"),
        ("loss_dice", "mask dice (last layer)"),
    ):
        if records and key in records[0]:
            marker = "." if len(iters) < 20 else None
            ax_loss.plot(iters, [r[key] for r in records], label=label, marker=marker)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    ax_loss.set_title("training losses")
    if records and "lr" in records[0]:
        ax_lr.plot(iters, [r["lr"] for r in records], color="tab:purple")
    ax_lr.set_xlabel("iteration")
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(alpha=0.3)
    ax_lr.set_title("learning rate")
    fig.suptitle(
        title or f"Mask2Former on generated shapes (val): PQ {headline['PQ']:.1f}  "
        f"mask AP {headline['mask_AP']:.1f}  mIoU {headline['mIoU']:.1f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_video(frames_rgb, path, fps=8):
    height, width = frames_rgb[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"Cannot write {path} with the mp4v codec of OpenCV")
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def run_demo(config_path, weights, images, video, output, threads):
    """Run demo/demo.py as a user would: the val images and the clip, drawn into ``output``."""
    command = [
        sys.executable,
        os.path.join(REPO_ROOT, "demo", "demo.py"),
        "--config-file",
        config_path,
        "--input",
        *images,
        "--video-input",
        video,
        "--output",
        output + os.sep,
        "--opts",
        "MODEL.WEIGHTS",
        weights,
    ]
    logger.info("Running the demo: " + " ".join(command))
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))


def draw_overview(cfg, images, path):
    """One picture: a row per image with the input and its panoptic, instance, semantic drawings."""
    from predictor import TASKS, VisualizationDemo

    demo = VisualizationDemo(cfg, confidence_threshold=0.5)
    rows = []
    for image_path in images:
        image = read_image(image_path, format="BGR")
        predictions = demo.predictor(image)
        drawn = [demo.draw(image[:, :, ::-1], predictions, task).get_image() for task in TASKS]
        height, width = drawn[0].shape[:2]
        panels = [cv2.resize(image[:, :, ::-1], (width, height), interpolation=cv2.INTER_NEAREST)]
        rows.append(np.concatenate(panels + drawn, axis=1))
    grid = np.concatenate(rows, axis=0)
    scale = min(1.0, 1600 / grid.shape[1])
    grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    header = np.full((40, grid.shape[1], 3), 255, np.uint8)
    for i, title in enumerate(("input",) + TASKS):
        x = i * grid.shape[1] // (len(TASKS) + 1) + 8
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(header, title, (x, 28), font, 0.9, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.imwrite(path, cv2.cvtColor(np.concatenate([header, grid], axis=0), cv2.COLOR_RGB2BGR))


def main(argv=None):
    args = get_parser().parse_args(argv)
    sizes = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    setup_logger(output, name="detectron2")
    setup_logger(output, name="mask2former")
    setup_logger(output, name="main_job")
    job_start = time.perf_counter()

    data_root = args.data_root or default_shapes_root() + ("_quick" if args.quick else "")
    start = time.perf_counter()
    generate_shapes_dataset(
        data_root, seed=args.seed, num_train=sizes["num_train"], num_val=sizes["num_val"]
    )
    register_generated_shapes(data_root)
    data_seconds = time.perf_counter() - start
    logger.info(f"Dataset ready in {data_root} ({data_seconds:.1f}s)")

    cfg = build_cfg(args, sizes, output)
    config_path = os.path.join(output, "config.yaml")
    with open(config_path, "w") as f:
        f.write(cfg.dump())
    results, train_eval_seconds = train_and_evaluate(cfg)
    headline = summarize_metrics(results)

    records = read_training_metrics(output)
    iter_times = [r["time"] for r in records if "time" in r]
    sec_per_iter = float(np.median(iter_times)) if iter_times else float("nan")

    plot_path = os.path.join(output, "training_curves.png")
    plot_training(records, headline, plot_path)

    demo_dir = os.path.join(output, "demo")
    os.makedirs(demo_dir, exist_ok=True)
    val_images = [d["file_name"] for d in DatasetCatalog.get(cfg.DATASETS.TEST[0])]
    demo_images = val_images[: sizes["demo_images"]]
    clip_path = os.path.join(output, "shapes_clip.mp4")
    size = read_image(val_images[0]).shape[0]
    write_video(render_video(args.seed, sizes["video_frames"], size, size), clip_path)
    weights = os.path.join(output, "model_final.pth")
    run_demo(config_path, weights, demo_images, clip_path, demo_dir, args.threads)
    overview_path = os.path.join(output, "overview.png")
    demo_cfg = cfg.clone()
    demo_cfg.defrost()
    demo_cfg.MODEL.WEIGHTS = weights
    demo_cfg.freeze()
    draw_overview(demo_cfg, demo_images[:4], overview_path)

    summary = {
        "metrics": headline,
        "evaluation": results,
        "iterations": cfg.SOLVER.MAX_ITER,
        "seconds_per_iteration": sec_per_iter,
        "seconds": {
            "data": data_seconds,
            "train_and_eval": train_eval_seconds,
            "total": time.perf_counter() - job_start,
        },
        "torch_threads": torch.get_num_threads(),
    }
    metrics_path = os.path.join(output, "results.json")
    with open(metrics_path, "w") as f:
        json.dump(summary, f, indent=2, default=float)

    video_out = os.path.join(demo_dir, "shapes_clip.mp4")
    lines = [
        f"Mask2Former on the generated shapes val split: PQ {headline['PQ']:.1f}, "
        f"mask AP {headline['mask_AP']:.1f}, mIoU {headline['mIoU']:.1f}",
        f"{cfg.SOLVER.MAX_ITER} iterations at {sec_per_iter:.2f} s/iter; whole job "
        f"{summary['seconds']['total'] / 60:.1f} min",
        "Outputs:",
        f"  dataset            {data_root}",
        f"  config             {config_path}",
        f"  model              {weights}",
        f"  training log       {os.path.join(output, 'log.txt')}",
        f"  training metrics   {os.path.join(output, 'metrics.json')}",
        f"  evaluation metrics {metrics_path}",
        f"  loss plot          {plot_path}",
        f"  demo images        {demo_dir}{os.sep}*.jpg",
        f"  demo video         {video_out} (input clip: {clip_path})",
        f"  overview picture   {overview_path}",
    ]
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
