"""
The main job's model trained from LabelMe files against the built-in route, in one run.

The generated shapes dataset (train 2000, val 100 images; seed 0) is written as LabelMe files
(tools/write_shapes_formats.py: a polygon per stuff region and per object, panoptic task).
First the dataset dicts of both routes are compared image by image (every segment's class and
mask). Then both routes train the main job's recipe and seed with train_net.py as a user runs
it:

* built-in: ``train_net.py --config-file configs/shapes/maskformer2_R18_shapes.yaml`` on the
  registered ``shapes_panoptic_train`` / ``_val`` (3000 iterations, SEED 0);
* LabelMe: ``train_net.py --config-file configs/custom/panoptic-segmentation/maskformer2_R18.yaml
  --dataset <labelme.yaml> TEST.EVAL_PERIOD 0``: the same recipe, its 3000 iterations derived
  from the dataset (12 epochs of 2000 images at batch 8);

then the LabelMe model is also evaluated on the built-in val annotations (``--eval-only``), so
that both are compared on the same annotations. The trainings run at the same time (the same
background load for both) with torch's threads fixed (2, or ``--threads``;
MASK2FORMER_ADAPTIVE_THREADS=0), so that neither follows the machine's load and each repeats.
Prints PQ, mask AP and mIoU of each, the time per iteration and the 1-minute load average
before and after, and writes them to ``<output>/results.json``.

    python benchmarks/bench_dataset_file.py [--iters N] [--routes builtin labelme]
                                            [--output output/bench_dataset_file]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mask2former.data.datasets.generated_shapes import (  # noqa: E402
    default_shapes_root,
    generate_shapes_dataset,
)
from mask2former.data.datasets.shapes_formats import write_shapes_formats  # noqa: E402

CONFIG = REPO_ROOT / "configs" / "shapes" / "maskformer2_R18_shapes.yaml"
CUSTOM_CONFIG = REPO_ROOT / "configs" / "custom" / "panoptic-segmentation" / "maskformer2_R18.yaml"
_METRICS = {"PQ": ("panoptic_seg", "PQ"), "mask_AP": ("segm", "AP"), "mIoU": ("sem_seg", "mIoU")}


def last_metrics(log_file):
    """PQ, mask AP and mIoU of the last evaluation in a Detectron2 log (its copypaste lines)."""
    lines = Path(log_file).read_text().splitlines()
    tables, task = {}, None
    for i, line in enumerate(lines):
        match = re.search(r"copypaste: Task: (\w+)", line)
        if match:
            task = match.group(1)
            names = lines[i + 1].split("copypaste: ")[1].split(",")
            values = [float(v) for v in lines[i + 2].split("copypaste: ")[1].split(",")]
            tables[task] = dict(zip(names, values))
    return {key: tables[task][name] for key, (task, name) in _METRICS.items() if task in tables}


def largest_loss_difference(output_a, output_b):
    """Largest difference of the logged total losses of two runs, iteration by iteration."""
    def losses(output):
        records = [json.loads(line) for line in open(os.path.join(output, "metrics.json"))]
        return {r["iteration"]: r["total_loss"] for r in records if "total_loss" in r}

    a, b = losses(output_a), losses(output_b)
    return max(abs(a[i] - b[i]) for i in set(a) & set(b))


def seconds_per_iteration(output):
    records = [json.loads(line) for line in open(os.path.join(output, "metrics.json"))]
    times = [r["time"] for r in records if "time" in r]
    return statistics.median(times) if times else float("nan")


def start(args, env, log):
    """Start train_net.py with ``args``, its output to ``log``; returns the process."""
    command = [sys.executable, str(REPO_ROOT / "train_net.py")] + args
    print("$ " + " ".join(command), flush=True)
    with open(log, "w") as f:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=f,
                                stderr=subprocess.STDOUT)


def wait(process, log):
    if process.wait() != 0:
        raise RuntimeError(f"{' '.join(process.args)} failed; see {log}")


def compare_dicts(labelme_yaml):
    """
    Compare the two routes' dataset dicts, image by image: (images compared, segments, segments
    whose class or mask differ).
    """
    import numpy as np
    from detectron2.data import DatasetCatalog
    from panopticapi.utils import rgb2id

    import mask2former.data  # noqa: F401  registers the built-in datasets
    from mask2former.data.datasets import register_dataset_file
    from mask2former.data.image_io import read_image

    def segments(record):
        ids = rgb2id(read_image(record["pan_seg_file_name"], "RGB"))
        return sorted((s["category_id"], (ids == s["id"]).tobytes())
                      for s in record["segments_info"])

    registered = register_dataset_file(labelme_yaml)
    images = total = different = 0
    for split in ("train", "val"):
        builtin = {os.path.abspath(r["file_name"]): r
                   for r in DatasetCatalog.get(f"shapes_panoptic_{split}")}
        for record in DatasetCatalog.get(registered.names[split]):
            expected = segments(builtin[os.path.abspath(record["file_name"])])
            actual = segments(record)
            images += 1
            total += len(expected)
            different += len(set(expected) ^ set(actual))
    return images, total, different


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int,
                        help="training iterations (default: 3000, the recipe's and derived)")
    parser.add_argument("--routes", nargs="+", choices=("builtin", "labelme"),
                        default=("builtin", "labelme"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="output/bench_dataset_file")
    args = parser.parse_args(argv)
    output = Path(args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    shapes_root = default_shapes_root()
    generate_shapes_dataset(shapes_root, seed=0)
    labelme = write_shapes_formats(shapes_root, output / "formats", formats=("labelme",))
    env = dict(os.environ, MASK2FORMER_ADAPTIVE_THREADS="0", OMP_NUM_THREADS=str(args.threads),
               GOMP_SPINCOUNT="10000",
               DETECTRON2_DATASETS=os.getenv("DETECTRON2_DATASETS", "datasets"))
    images, segments, different = compare_dicts(labelme["labelme"])
    print(f"Dataset dicts: {images} images, {segments} segments, {different} differ", flush=True)
    iters = ["SOLVER.MAX_ITER", str(args.iters)] if args.iters else []
    routes = {
        "builtin": ("built-in (shapes_panoptic_*)", ["--config-file", str(CONFIG), "SEED", "0"]
                    + iters + ["OUTPUT_DIR", str(output / "builtin")]),
        "labelme": ("LabelMe (--dataset)", ["--config-file", str(CUSTOM_CONFIG), "--dataset",
                                            labelme["labelme"], "SEED", "0", "TEST.EVAL_PERIOD",
                                            "0"] + iters + ["OUTPUT_DIR", str(output / "labelme")]),
    }
    runs = dict(routes[route] for route in args.routes)
    results = {"iterations": args.iters or 3000, "threads": args.threads, "runs": {},
               "dataset_dicts": {"images": images, "segments": segments, "different": different}}
    load_before, begin = os.getloadavg()[0], time.perf_counter()
    folders = {name: run_args[run_args.index("OUTPUT_DIR") + 1] for name, run_args in runs.items()}
    processes = {name: start(run_args, env, folders[name] + ".log")
                 for name, run_args in runs.items()}
    for name, process in processes.items():
        wait(process, folders[name] + ".log")
        results["runs"][name] = {
            "val annotations": "own",
            **last_metrics(os.path.join(folders[name], "log.txt")),
            "s_per_iter": seconds_per_iteration(folders[name]),
            "minutes": (time.perf_counter() - begin) / 60,
            "load_average_1min": [load_before, os.getloadavg()[0]],
        }
    if len(folders) == 2:
        results["largest_total_loss_difference"] = largest_loss_difference(*folders.values())
    if "labelme" in args.routes:
        evaluation = str(output / "labelme_on_builtin_val")
        wait(start(["--config-file", str(CONFIG), "--eval-only", "MODEL.WEIGHTS",
                    str(output / "labelme" / "model_final.pth"), "OUTPUT_DIR", evaluation], env,
                   evaluation + ".log"), evaluation + ".log")
        results["runs"]["LabelMe model on the built-in val annotations"] = {
            "val annotations": "built-in", **last_metrics(os.path.join(evaluation, "log.txt"))}

    print(f"\n{results['iterations']} iterations, {args.threads} threads, SEED 0; dataset dicts: "
          f"{images} images, {segments} segments, {different} differ; largest difference of the "
          f"logged total losses: {results.get('largest_total_loss_difference', 'n/a')}")
    print(f"{'route':<48} {'PQ':>6} {'mask AP':>8} {'mIoU':>6} {'s/iter':>7} {'load 1-min':>11}")
    for name, r in results["runs"].items():
        load = "-".join(f"{v:.1f}" for v in r.get("load_average_1min", []))
        print(f"{name:<48} {r.get('PQ', float('nan')):6.1f} {r.get('mask_AP', float('nan')):8.1f} "
              f"{r.get('mIoU', float('nan')):6.1f} {r.get('s_per_iter', float('nan')):7.3f} "
              f"{load:>11}")
    with open(output / "results.json", "w") as f:
        json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
