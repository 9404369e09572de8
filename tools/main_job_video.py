#!/usr/bin/env python
"""
The video main job: video Mask2Former end to end on generated shapes videos, in minutes on a CPU.

1. generate the videos (shapes that move, enter, leave and occlude each other, in the YouTube-VIS
   layout; skipped when the same version, seed and sizes are already on disk);
2. train video Mask2Former with train_net_video.py's Trainer, starting from the image main job's
   model ``output/main_job/model_final.pth`` (every parameter but the class head loads, as the
   published video models start from COCO). When that file is missing, the image main job
   (tools/main_job.py) runs first to write it; ``--image-weights`` names another image model,
   ``--from-scratch`` (and ``--quick``) starts from random weights instead (a far lower AP: from
   scratch, 500 iterations gave AP 5 on the shared machine);
3. evaluate it on the val videos (YouTube-VIS AP, and results.json in the submission format);
4. run demo_video/demo.py on a val video's frames and on a longer generated clip (mp4);
5. plot the training curves, write the metrics JSON and print where everything is.

    .venv/bin/python tools/main_job_video.py [--output output/main_job_video] [--iters N]
        [--image-weights PATH | --from-scratch] [--quick]
"""
import json
import logging
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import main_job  # noqa: E402  (first: it sets the OpenMP policy before torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from mask2former_video import get_maskformer2_video_cfg  # noqa: E402
from mask2former_video.data_video.datasets.generated_shapes_video import (  # noqa: E402
    default_shapes_video_root,
    generate_shapes_video_dataset,
    register_generated_shapes_video,
    render_shapes_video,
)

REPO_ROOT = main_job.REPO_ROOT
IMAGE_JOB_WEIGHTS = os.path.join("output", "main_job", "model_final.pth")
DEFAULT_CONFIG = os.path.join(REPO_ROOT, "configs", "shapes", "video_maskformer2_R18_shapes.yaml")
logger = logging.getLogger("main_job_video")

# Sizes of a full and of a --quick run; "iters": None is the config's SOLVER.MAX_ITER.
FULL = {"num_train": 300, "num_val": 30, "num_frames": 16, "iters": None, "demo_frames": 48}
QUICK = {"num_train": 6, "num_val": 3, "num_frames": 6, "iters": 4, "demo_frames": 10}


def get_parser():
    parser = main_job.get_parser()
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(config_file=DEFAULT_CONFIG, output="output/main_job_video")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--image-weights", default=IMAGE_JOB_WEIGHTS,
        help="image model to start from (default: %(default)s, written by tools/main_job.py, "
             "which runs first when the file is missing)",
    )
    weights.add_argument("--from-scratch", action="store_true",
                         help="start from random weights (implied by --quick)")
    return parser


def start_weights(args):
    """
    The checkpoint to start from: "" for random weights (--from-scratch, --quick without
    --image-weights), else the image model, trained first by the image main job when it is the
    default one and missing. Another missing file is an error.
    """
    if args.from_scratch or (args.quick and args.image_weights == IMAGE_JOB_WEIGHTS):
        return ""
    if not os.path.isfile(args.image_weights):
        if args.image_weights != IMAGE_JOB_WEIGHTS:
            raise SystemExit(f"--image-weights {args.image_weights}: no such file")
        logger.info(f"{IMAGE_JOB_WEIGHTS} is missing: running the image main job first.")
        main_job.main(["--output", os.path.dirname(IMAGE_JOB_WEIGHTS),
                       "--threads", str(args.threads)])
    return os.path.abspath(args.image_weights)


def run_demo(config_path, weights, inputs, output, threads, extra=()):
    """Run demo_video/demo.py as a user would, drawing into ``output``."""
    command = [sys.executable, os.path.join(REPO_ROOT, "demo_video", "demo.py"),
               "--config-file", config_path, "--input", *inputs, "--output", output, *extra,
               "--opts", "MODEL.WEIGHTS", weights]
    logger.info("Running the demo: " + " ".join(command))
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))


def main(argv=None):
    args = get_parser().parse_args(argv)
    sizes = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    for name in ("detectron2", "mask2former", "main_job_video"):
        setup_logger(output, name=name)
    job_start = time.perf_counter()
    weights = start_weights(args)

    data_root = args.data_root or default_shapes_video_root() + ("_quick" if args.quick else "")
    start = time.perf_counter()
    generate_shapes_video_dataset(data_root, seed=args.seed, num_train=sizes["num_train"],
                                  num_val=sizes["num_val"], num_frames=sizes["num_frames"])
    register_generated_shapes_video(data_root)
    data_seconds = time.perf_counter() - start
    logger.info(f"Videos ready in {data_root} ({data_seconds:.1f}s)")

    cfg = main_job.build_cfg(args, sizes, output, load_cfg=get_maskformer2_video_cfg)
    cfg.defrost()
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    config_path = os.path.join(output, "config.yaml")
    with open(config_path, "w") as f:
        f.write(cfg.dump())
    results, train_eval_seconds = main_job.train_and_evaluate(cfg, "train_net_video")
    if "segm" not in results:
        raise RuntimeError(f"The evaluation gave no YouTube-VIS metrics: {results}")
    metrics = dict(results["segm"])

    records = main_job.read_training_metrics(output)
    iter_times = [r["time"] for r in records if "time" in r]
    sec_per_iter = float(np.median(iter_times)) if iter_times else float("nan")
    plot_path = os.path.join(output, "training_curves.png")
    main_job.plot_training(
        records, None, plot_path,
        title=f"Video Mask2Former on generated shapes videos (val): AP {metrics['AP']:.1f}  "
              f"AP50 {metrics['AP50']:.1f}  AR10 {metrics['AR10']:.1f}",
    )

    demo_dir = os.path.join(output, "demo")
    model_path = os.path.join(output, "model_final.pth")
    val_video = DatasetCatalog.get(cfg.DATASETS.TEST[0])[0]
    run_demo(config_path, model_path, [os.path.dirname(val_video["file_names"][0])], demo_dir,
             args.threads, extra=("--save-frames",))
    clip_path = os.path.join(output, "shapes_video_clip.mp4")
    frames, _ = render_shapes_video(np.random.default_rng([args.seed, 11]), 128,
                                    sizes["demo_frames"])
    main_job.write_video(frames, clip_path)
    run_demo(config_path, model_path, [clip_path], demo_dir, args.threads,
             extra=("--window", "16", "--overlap", "4"))

    summary = {
        "metrics": metrics,
        "start_weights": weights or "random (from scratch)",
        "iterations": cfg.SOLVER.MAX_ITER,
        "seconds_per_iteration": sec_per_iter,
        "seconds": {"data": data_seconds, "train_and_eval": train_eval_seconds,
                    "total": time.perf_counter() - job_start},
        "torch_threads": torch.get_num_threads(),
    }
    metrics_path = os.path.join(output, "results.json")
    with open(metrics_path, "w") as f:
        json.dump(summary, f, indent=2, default=float)

    video_name = os.path.basename(os.path.dirname(val_video["file_names"][0]))
    lines = [
        f"Video Mask2Former on the generated shapes val videos: AP {metrics['AP']:.1f}, "
        f"AP50 {metrics['AP50']:.1f}, AP75 {metrics['AP75']:.1f}, AR10 {metrics['AR10']:.1f}",
        f"started from {summary['start_weights']}; {cfg.SOLVER.MAX_ITER} iterations at "
        f"{sec_per_iter:.2f} s/iter; whole job {summary['seconds']['total'] / 60:.1f} min",
        "Outputs:",
        f"  videos             {data_root}",
        f"  config             {config_path}",
        f"  model              {model_path}",
        f"  training log       {os.path.join(output, 'log.txt')}",
        f"  evaluation metrics {metrics_path}",
        f"  predicted tracks   {os.path.join(output, 'inference', cfg.DATASETS.TEST[0])}"
        f"{os.sep}results.json (YouTube-VIS submission format)",
        f"  loss plot          {plot_path}",
        f"  demo on val video  {os.path.join(demo_dir, video_name)}.mp4 and its frames",
        f"  demo on long clip  {os.path.join(demo_dir, 'shapes_video_clip.mp4')} "
        f"(input: {clip_path})",
    ]
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
