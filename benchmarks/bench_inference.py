"""
End-to-end inference time per image and peak memory of a Mask2Former model with each
MSDeformAttn implementation (native op vs PyTorch), in one run.

Each measurement runs in its own process (MASK2FORMER_MS_DEFORM_ATTN=native or =pytorch), so its
peak resident memory (getrusage maxrss) is its own; the processes of the two implementations
alternate for ``--rounds`` rounds, so both see the same machine load. The model has random
weights (timing does not depend on them) and runs on random 3 x SIZE x SIZE images, panoptic
post-processing included.

    python benchmarks/bench_inference.py [--config-file configs/coco/panoptic-segmentation/\
maskformer2_R50_bs16_50ep.yaml] [--size 512] [--images 5] [--rounds 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"
IMPLEMENTATIONS = ("native", "pytorch")


def measure(config_file, size, num_images):
    """Builds the model and times ``num_images`` images after one warm-up; returns a dict."""
    import resource

    import torch
    from detectron2.modeling import build_model

    from mask2former.config import get_maskformer2_cfg

    cfg = get_maskformer2_cfg(
        str(REPO_ROOT / config_file), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]
    )
    cfg.freeze()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
              for _ in range(num_images + 1)]
    times = []
    with torch.no_grad():
        for index, image in enumerate(images):
            start = time.perf_counter()
            model([{"image": image, "height": size, "width": size}])
            if index > 0:  # the first image warms up
                times.append(time.perf_counter() - start)
    return {
        "seconds_per_image": times,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def run_child(implementation, args):
    env = {**os.environ, "MASK2FORMER_MS_DEFORM_ATTN": implementation}
    command = [sys.executable, __file__, "--child", "--config-file", args.config_file,
               "--size", str(args.size), "--images", str(args.images)]
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{implementation} run failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--size", type=int, default=512, help="image height and width")
    parser.add_argument("--images", type=int, default=5, help="timed images per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.config_file, args.size, args.images)))
        return

    results = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(args.rounds):
        for name in IMPLEMENTATIONS:
            results[name].append(run_child(name, args))
    print(f"{args.config_file}, {args.size}x{args.size}, random weights, CPU, "
          f"{results['native'][0]['threads']} threads, {args.rounds} x {args.images} images "
          "per implementation (alternating processes)")
    print(f"{'implementation':<16}{'s / image':>12}{'peak RSS MiB':>15}")
    medians = {}
    for name in IMPLEMENTATIONS:
        medians[name] = statistics.median(
            t for run in results[name] for t in run["seconds_per_image"]
        )
        peak = max(run["peak_rss_mib"] for run in results[name])
        print(f"{name:<16}{medians[name]:>12.3f}{peak:>15.0f}")
    print(f"speedup (pytorch / native): {medians['pytorch'] / medians['native']:.2f}x")


if __name__ == "__main__":
    main()
