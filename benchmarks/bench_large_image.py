"""
Peak memory and time of ``demo/demo.py`` on a 24-megapixel photo (6000 x 4000 JPEG, stored
sideways with an EXIF orientation tag, as phones do), each run in its own process under an
address-space limit (``prlimit --as``) so that a run that would grow past it fails instead of
taking the machine's memory; peak RSS and wall time from ``/usr/bin/time -v``.

    python benchmarks/bench_large_image.py [--limit-gib 8] [--repo DIR] \
        [--main-job-weights output/main_job/model_final.pth] [--formats pytorch onnx] \
        [--opts KEY VALUE ...]

``--repo`` runs the demo of another checkout (e.g. an older commit, for a before/after).
Cases: the R50 COCO panoptic config with random weights, and the main job's model when its
weights are given; ``--formats`` runs each as the PyTorch model and/or exported to ONNX (by this
checkout's tools/deploy/export_model.py, traced at 128 px: the graph serves every size, and the
demo resizes the photo by the case's config) and run by ONNX Runtime and the numpy runner
(``MODEL.WEIGHTS model.onnx``). With the main job's weights, ``--agreement`` also runs that
model on the photo with the post-processing at the output size and at the network's resolution
(MODEL.MASK_FORMER.TEST.POSTPROCESS_AT_NETWORK_RESOLUTION) and prints how far they agree.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
R50_PANOPTIC = "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"
MAIN_JOB = "configs/shapes/maskformer2_R18_shapes.yaml"
EXIF_ORIENTATION = 0x0112


def make_photo(path, width=6000, height=4000, seed=0):
    """
    A photo-like JPEG: a sky gradient, ground, soft shapes and sensor noise, drawn small,
    upscaled to (height, width), stored rotated 90 degrees with EXIF orientation 6.
    """
    import cv2
    from PIL import Image

    rng = np.random.default_rng(seed)
    small_h, small_w = height // 10, width // 10
    y = np.linspace(0, 1, small_h)[:, None, None]
    scene = (np.array([235, 190, 120]) * (1 - y) + np.array([140, 90, 50]) * y)
    scene = np.broadcast_to(scene, (small_h, small_w, 3)).astype(np.float32).copy()
    scene[small_h * 2 // 3:] = (60, 120, 70)
    for _ in range(12):
        center = (int(rng.integers(0, small_w)), int(rng.integers(small_h // 3, small_h)))
        color = tuple(int(c) for c in rng.integers(20, 230, 3))
        cv2.circle(scene, center, int(rng.integers(10, small_h // 5)), color, -1, cv2.LINE_AA)
    scene = cv2.GaussianBlur(scene, (0, 0), 1.5)
    photo = cv2.resize(scene, (width, height), interpolation=cv2.INTER_CUBIC)
    for start in range(0, height, 500):  # noise in bands: little memory
        band = photo[start:start + 500]
        band += rng.normal(0, 6, band.shape).astype(np.float32)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    stored = np.ascontiguousarray(np.rot90(photo, k=1))  # 4000 wide, 6000 tall
    del photo
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # turn 90 degrees clockwise to view: 6000 x 4000
    Image.fromarray(stored).save(path, quality=92, exif=exif)


def export_onnx(config, weights, workdir, name):
    """The case's model exported to ONNX in its own process; returns the model file."""
    import cv2

    sample = os.path.join(workdir, "sample.jpg")
    noise = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    cv2.imwrite(sample, noise)
    output = os.path.join(workdir, f"onnx_{name}")
    command = [
        sys.executable, str(REPO_ROOT / "tools" / "deploy" / "export_model.py"), "--config-file",
        str(REPO_ROOT / config), "--format", "onnx", "--sample-image", sample, "--output", output,
        "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "192",
        "MODEL.WEIGHTS", weights,  # "": random weights
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    return os.path.join(output, "model.onnx")


def run_demo(repo, config, weights, photo, output, limit_gib, opts):
    command = [
        "prlimit", f"--as={int(limit_gib * 2**30)}", "/usr/bin/time", "-v",
        sys.executable, os.path.join(repo, "demo", "demo.py"), "--config-file",
        os.path.join(repo, config), "--input", photo, "--output", output,
        "--opts", "MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu", *opts,
    ]
    env = dict(os.environ, PYTHONPATH=repo)
    proc = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr)
    seconds = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.group(1).split(":"))))
    demo_log = proc.stderr.split("\tCommand being timed")[0].strip().splitlines()
    failure = "" if proc.returncode == 0 else demo_log[-3:]
    return proc.returncode, int(rss.group(1)) / 2**20, seconds, failure


def agreement_child(config, weights, photo):
    """
    Both post-processing modes on the photo (semantic labels, 20 detections: two results of each
    fit in memory): time and agreement of their results.
    """
    import time

    import torch
    from detectron2.data import transforms as T
    from detectron2.modeling import build_model

    sys.path.insert(0, str(REPO_ROOT))
    from mask2former.checkpoint import MaskFormerCheckpointer
    from mask2former.config import get_maskformer2_cfg
    from mask2former.data.image_io import read_image
    from mask2former.modeling.postprocessing import panoptic_categories

    image = read_image(photo, format="BGR")
    results, seconds = {}, {}
    for fast in (False, True):
        cfg = get_maskformer2_cfg(str(REPO_ROOT / config), [
            "MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu",
            "MODEL.MASK_FORMER.TEST.POSTPROCESS_AT_NETWORK_RESOLUTION", str(fast),
            "MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT", "labels", "TEST.DETECTIONS_PER_IMAGE", "20",
        ])
        model = build_model(cfg).eval()
        MaskFormerCheckpointer(model).load(weights)
        resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
        resized = resize.get_transform(image).apply_image(image)
        inputs = [{"image": torch.as_tensor(resized.transpose(2, 0, 1).copy()),
                   "height": image.shape[0], "width": image.shape[1]}]
        start = time.perf_counter()
        with torch.no_grad():
            results[fast] = model(inputs)[0]
        seconds[fast] = time.perf_counter() - start

    exact, fast = results[False], results[True]
    panoptic = panoptic_categories(*exact["panoptic_seg"]) == panoptic_categories(
        *fast["panoptic_seg"]
    )
    semantic = exact["sem_seg_labels"] == fast["sem_seg_labels"]
    a, b = exact["instances"].pred_masks, fast["instances"].pred_masks
    iou = [((x & y).sum() / (x | y).sum().clamp(min=1)).item() for x, y in zip(a, b)]
    print(f"post-processing at the output size: {seconds[False]:.1f} s per image; "
          f"at the network resolution: {seconds[True]:.1f} s")
    print(f"agreement: panoptic category per pixel {panoptic.float().mean() * 100:.2f}%, "
          f"semantic class per pixel {semantic.float().mean() * 100:.2f}%, instance masks "
          f"IoU mean {np.mean(iou):.3f} / min {np.min(iou):.3f} ({len(iou)} instances)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-gib", type=float, default=8.0, help="address-space limit")
    parser.add_argument("--repo", default=str(REPO_ROOT), help="checkout whose demo runs")
    parser.add_argument("--main-job-weights", help="model_final.pth of tools/main_job.py")
    parser.add_argument("--formats", nargs="+", choices=("pytorch", "onnx"), default=["pytorch"],
                        help="run each model as PyTorch model and/or exported to ONNX")
    parser.add_argument("--opts", nargs="*", default=[], help="extra config KEY VALUE pairs")
    parser.add_argument("--agreement", action="store_true",
                        help="compare the two post-processing modes (needs --main-job-weights)")
    parser.add_argument("--agreement-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agreement_child:
        agreement_child(MAIN_JOB, *args.agreement_child)
        return
    workdir = tempfile.mkdtemp(prefix="m2f_large_image_")
    photo = os.path.join(workdir, "photo_6000x4000.jpg")
    make_photo(photo)
    cases = [("R50 COCO panoptic, random weights", R50_PANOPTIC, "")]
    if args.main_job_weights:
        cases.append(("main job model", MAIN_JOB, os.path.abspath(args.main_job_weights)))
    print(f"repo {args.repo}, limit {args.limit_gib} GiB address space, photo {photo}")
    print("| model | exit | peak RSS | wall time |")
    print("|---|---:|---:|---:|")
    for name, config, weights in cases:
        for model_format in args.formats:
            short_name = f"{name.split()[0]}_{model_format}"
            model = weights
            if model_format == "onnx":
                model = export_onnx(config, weights, workdir, short_name)
            output = os.path.join(workdir, short_name + os.sep)
            code, rss_gib, seconds, failure = run_demo(
                args.repo, config, model, photo, output, args.limit_gib, args.opts
            )
            print(f"| {name}, {model_format} | {code} | {rss_gib:.2f} GiB | {seconds:.1f} s |",
                  flush=True)
            if failure:
                print("\n".join(failure), file=sys.stderr)
    if args.agreement and args.main_job_weights:
        subprocess.run(
            ["prlimit", f"--as={int(args.limit_gib * 2**30)}", sys.executable, __file__,
             "--agreement-child", os.path.abspath(args.main_job_weights), photo], check=True,
        )


if __name__ == "__main__":
    main()
