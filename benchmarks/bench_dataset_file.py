"""
The main job's model trained from LabelMe files against the built-in route, in one run.

The generated shapes dataset (train 2000, val 100 images; seed 0) is written as LabelMe files
(tools/write_shapes_formats.py: a polygon per stuff region and per object, panoptic task) and
both routes train the main job's recipe, configs/shapes/maskformer2_R18_shapes.yaml (3000
iterations, SEED 0), with train_net.py as a user runs it:

* built-in: ``train_net.py --config-file configs/shapes/maskformer2_R18_shapes.yaml`` on the
  registered ``shapes_panoptic_train`` / ``_val``;
* LabelMe: the same command with ``--dataset <labelme.yaml>``;

then the LabelMe model is also evaluated on the built-in val annotations (``--eval-only``), so
that both models are compared on the same annotations. The two trainings run at the same time
(the same background load for both) with torch's threads fixed (2, or ``--threads``;
MASK2FORMER_ADAPTIVE_THREADS=0), so that neither follows the machine's load and each run
repeats. Prints PQ, mask AP and mIoU of each, the time per iteration and the 1-minute load
average before and after, and writes them to ``<output>/results.json``.

    python benchmarks/bench_dataset_file.py [--iters 3000] [--output output/bench_dataset_file]
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=3000)
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
    common = ["--config-file", str(CONFIG), "SOLVER.MAX_ITER", str(args.iters), "SEED", "0"]
    runs = {
        "built-in (shapes_panoptic_*)": common + ["OUTPUT_DIR", str(output / "builtin")],
        "LabelMe (--dataset)": ["--dataset", labelme["labelme"]] + common
        + ["OUTPUT_DIR", str(output / "labelme")],
    }
    results = {"iterations": args.iters, "threads": args.threads, "runs": {}}
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
    evaluation = str(output / "labelme_on_builtin_val")
    wait(start(["--config-file", str(CONFIG), "--eval-only", "MODEL.WEIGHTS",
                str(output / "labelme" / "model_final.pth"), "OUTPUT_DIR", evaluation], env,
               evaluation + ".log"), evaluation + ".log")
    results["runs"]["LabelMe model on the built-in val annotations"] = {
        "val annotations": "built-in", **last_metrics(os.path.join(evaluation, "log.txt"))}

    print(f"\n{args.iters} iterations, {args.threads} threads, SEED 0")
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
