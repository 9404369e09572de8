"""
Time of COCO mask AP (or box AP) as Detectron2's COCOEvaluator computes it, with pycocotools'
COCOeval against the implementation this project picks (mask2former/evaluation/
fast_cocoeval.py: faster-coco-eval where installed), on a synthetic COCO-sized dataset, in one
run.

The dataset: ``--images`` images of 640 x 480 with 1 to 14 objects each (COCO val has 7.3 on
average; 80 categories, polygons turned into masks) and ``--detections`` scored detections per
image, half of them near an object (shifted, resized, sometimes of another category), half
anywhere: the 100 detections per image that Mask2Former's instance inference returns. Both
implementations score the same detections through pycocotools' ``COCO.loadRes`` (as
COCOEvaluator does) and then evaluate, accumulate and summarize; the two alternate for
``--rounds`` rounds (A B B A ...), each on fresh copies, so both see the same machine load. The
12 AP / AR numbers of both are printed and must agree to 1e-6.

    python benchmarks/bench_coco_eval.py [--images 5000] [--detections 100] [--rounds 2] \
        [--iou-type segm]
"""
import argparse
import contextlib
import copy
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mask2former.evaluation.fast_cocoeval import fast_cocoeval  # noqa: E402

HEIGHT, WIDTH, CATEGORIES = 480, 640, 80


def _polygon(rng, cx, cy, radius):
    """A star-shaped polygon of 10 points around (cx, cy), clipped to the image."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, 10))
    radii = radius * rng.uniform(0.6, 1.0, 10)
    points = np.stack([np.clip(cx + radii * np.cos(angles), 0, WIDTH - 1),
                       np.clip(cy + radii * np.sin(angles), 0, HEIGHT - 1)], axis=1)
    return points.ravel().tolist()


def _rles(polygons):
    """RLE masks (counts as str, as in a results json) of polygons, one mask each."""
    rles = mask_util.frPyObjects(polygons, HEIGHT, WIDTH)
    for rle in rles:
        rle["counts"] = rle["counts"].decode()
    return rles


def synthetic_dataset(num_images, detections_per_image, seed=0):
    """(ground truth json dict, detections in COCO's result format without boxes)."""
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "height": HEIGHT, "width": WIDTH,
                       "file_name": f"{image_id:012d}.jpg"})
        objects = [(rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(4, 160),
                    int(rng.integers(1, CATEGORIES + 1))) for _ in range(rng.integers(1, 15))]
        polygons = [_polygon(rng, cx, cy, r) for cx, cy, r, _ in objects]
        for polygon, rle, (_, _, _, category) in zip(polygons, _rles(polygons), objects):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                "segmentation": [polygon], "area": float(mask_util.area(rle)),
                "bbox": mask_util.toBbox(rle).tolist(), "iscrowd": 0})
        shapes = []
        for _ in range(detections_per_image):
            if rng.random() < 0.5:
                cx, cy, r, category = objects[rng.integers(len(objects))]
                cx, cy = cx + rng.normal(0, 0.2 * r), cy + rng.normal(0, 0.2 * r)
                r *= rng.uniform(0.7, 1.3)
                if rng.random() < 0.2:
                    category = int(rng.integers(1, CATEGORIES + 1))
            else:
                cx, cy, r = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(4, 160)
                category = int(rng.integers(1, CATEGORIES + 1))
            shapes.append((_polygon(rng, cx, cy, r), category))
        for rle, (_, category) in zip(_rles([p for p, _ in shapes]), shapes):
            detections.append({"image_id": image_id, "category_id": category,
                               "segmentation": rle, "score": float(rng.random())})
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, CATEGORIES + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def evaluate(cocoeval_class, ground_truth_json, detections, iou_type):
    """Seconds of loadRes and in all (wall), CPU seconds of all threads, and the 12 numbers."""
    ground_truth = COCO()
    ground_truth.dataset = copy.deepcopy(ground_truth_json)
    detections = copy.deepcopy(detections)
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        wall, cpu = time.perf_counter(), time.process_time()
        results = ground_truth.loadRes(detections)
        load_wall = time.perf_counter() - wall
        evaluation = cocoeval_class(ground_truth, results, iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"load": load_wall, "total": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu, "stats": np.asarray(evaluation.stats)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iou-type", default="segm", choices=("segm", "bbox"))
    args = parser.parse_args()

    fast_class, fast_name = fast_cocoeval()
    implementations = {"pycocotools": COCOeval, fast_name: fast_class}
    start = time.perf_counter()
    ground_truth_json, detections = synthetic_dataset(args.images, args.detections)
    if args.iou_type == "bbox":
        for detection in detections:
            detection["bbox"] = mask_util.toBbox(detection.pop("segmentation")).tolist()
    print(f"{args.images} images of {WIDTH} x {HEIGHT}, {len(ground_truth_json['annotations'])} "
          f"objects, {len(detections)} detections ({time.perf_counter() - start:.0f} s to make); "
          f"{args.iou_type} AP")

    runs = {name: [] for name in implementations}
    order = list(implementations)
    for round_index in range(args.rounds):
        for name in order if round_index % 2 == 0 else order[::-1]:
            run = evaluate(implementations[name], ground_truth_json, detections, args.iou_type)
            runs[name].append(run)
            print(f"  round {round_index + 1}: {name}: {run['total']:.1f} s "
                  f"(loadRes {run['load']:.1f} s, CPU {run['cpu']:.1f} s)", flush=True)

    print(f"\nMedians; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          f"(wall times grow with the load, CPU times much less)")
    print("| implementation | wall s | of which loadRes s | CPU s | wall vs pycocotools "
          "| CPU vs pycocotools |")
    print("|---|---|---|---|---|---|")
    medians = {name: {key: statistics.median(r[key] for r in name_runs)
                      for key in ("total", "load", "cpu")}
               for name, name_runs in runs.items()}
    reference = medians["pycocotools"]
    for name, median in medians.items():
        print(f"| {name} | {median['total']:.1f} | {median['load']:.1f} | {median['cpu']:.1f} | "
              f"{reference['total'] / median['total']:.2f}x | "
              f"{reference['cpu'] / median['cpu']:.2f}x |")
    stats = [run["stats"] for name_runs in runs.values() for run in name_runs]
    difference = max(np.abs(s - stats[0]).max() for s in stats)
    print(f"\n12 AP / AR numbers: {np.round(stats[0], 4).tolist()}; largest difference between "
          f"the implementations {difference:.1e}")
    if difference > 1e-6:
        raise SystemExit("The implementations disagree.")


if __name__ == "__main__":
    main()
