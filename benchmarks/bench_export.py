"""
Inference time per image and peak memory of an exported Mask2Former run by ONNX Runtime
(mask2former.deploy: the ONNX graph, then the numpy inference) against the PyTorch model run
eagerly with the native MSDeformAttn op, in one run.

The model (random weights; timing does not depend on them) is exported once, in its own
process. Each measurement then runs in its own process, so its peak resident memory (getrusage
maxrss) is its own; the ONNX Runtime process imports numpy and onnxruntime only, as a deployment
does (torch and Detectron2 are made unimportable there). The processes of the two runtimes
alternate for ``--rounds`` rounds, so both see the same machine load. Both compute every result
the config enables (R50 COCO panoptic: panoptic, instance and semantic) for random
3 x SIZE x SIZE images.

    python benchmarks/bench_export.py [--config-file configs/coco/panoptic-segmentation/\
maskformer2_R50_bs16_50ep.yaml] [--size 512] [--images 5] [--rounds 2] [--threads 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
DEFAULT_CONFIG = "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"
RUNTIMES = ("pytorch", "onnxruntime")


def _images(size, count):
    import numpy as np

    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (3, size, size), dtype=np.uint8) for _ in range(count)]


def _build_model(config_file, threads):
    import torch
    from detectron2.modeling import build_model

    from mask2former.config import get_maskformer2_cfg

    torch.set_num_threads(threads)
    cfg = get_maskformer2_cfg(
        str(REPO_ROOT / config_file), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]
    )
    cfg.freeze()
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def export(config_file, size, output_dir, threads):
    """Export the model to ONNX in ``output_dir``; returns the file and the seconds it took."""
    import torch

    from mask2former.export import build_deploy_info, export_model

    cfg, model = _build_model(config_file, threads)
    image = torch.from_numpy(_images(size, 1)[0])
    start = time.perf_counter()
    path = export_model(model, image, "onnx", output_dir,
                        build_deploy_info(cfg, model, "onnx", (size, size)))
    return {"path": path, "export_seconds": time.perf_counter() - start}


def _timed(run, images):
    """Seconds per image of ``run`` after one warm-up image."""
    times = []
    for index, image in enumerate(images):
        start = time.perf_counter()
        run(image)
        if index > 0:
            times.append(time.perf_counter() - start)
    return times


def measure_pytorch(config_file, size, num_images, threads):
    import resource

    import torch

    _, model = _build_model(config_file, threads)

    def run(image):
        with torch.no_grad():
            model([{"image": torch.from_numpy(image), "height": size, "width": size}])

    times = _timed(run, _images(size, num_images + 1))
    return {"seconds_per_image": times,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure_onnxruntime(model_path, size, num_images, threads):
    import resource

    # A deployment has neither: mask2former then imports its deploy runner only.
    sys.modules["torch"] = sys.modules["detectron2"] = None
    from mask2former.deploy import ExportedMask2Former

    runner = ExportedMask2Former(model_path, num_threads=threads)
    times = _timed(runner.inference, _images(size, num_images + 1))
    graph_times = _timed(runner.head_outputs, _images(size, 3))
    return {"seconds_per_image": times, "graph_seconds": graph_times,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(args, *child_args):
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MASK2FORMER_MS_DEFORM_ATTN": "native"}
    command = [sys.executable, __file__, "--size", str(args.size), "--images", str(args.images),
               "--threads", str(args.threads), "--config-file", args.config_file,
               "--child", *child_args]
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{child_args} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(args):
    kind = args.child[0]
    if kind == "export":
        return export(args.config_file, args.size, args.child[1], args.threads)
    if kind == "pytorch":
        return measure_pytorch(args.config_file, args.size, args.images, args.threads)
    return measure_onnxruntime(args.child[1], args.size, args.images, args.threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--size", type=int, default=512, help="image height and width")
    parser.add_argument("--images", type=int, default=5, help="timed images per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per runtime")
    parser.add_argument("--threads", type=int, default=2, help="threads of both runtimes")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    with tempfile.TemporaryDirectory() as output_dir:
        exported = run_child(args, "export", output_dir)
        results = {name: [] for name in RUNTIMES}
        for _ in range(args.rounds):
            results["pytorch"].append(run_child(args, "pytorch"))
            results["onnxruntime"].append(run_child(args, "onnxruntime", exported["path"]))

    print(f"{args.config_file}, {args.size}x{args.size}, random weights, CPU, {args.threads} "
          f"threads, {args.rounds} x {args.images} images per runtime (alternating processes); "
          f"ONNX export took {exported['export_seconds']:.1f} s")
    print(f"{'runtime':<34}{'s / image':>10}{'peak RSS MiB':>15}")
    medians = {}
    for name, label in (("pytorch", "PyTorch eager, native op"),
                        ("onnxruntime", "ONNX Runtime + numpy inference")):
        medians[name] = statistics.median(
            t for run in results[name] for t in run["seconds_per_image"])
        peak = max(run["peak_rss_mib"] for run in results[name])
        print(f"{label:<34}{medians[name]:>10.3f}{peak:>15.0f}")
    graph = statistics.median(t for run in results["onnxruntime"] for t in run["graph_seconds"])
    print(f"  of which the ONNX graph: {graph:.3f} s / image")
    print(f"speedup (PyTorch / ONNX Runtime): {medians['pytorch'] / medians['onnxruntime']:.2f}x")


if __name__ == "__main__":
    main()
