"""
Training seconds per iteration of the main job's model, on an idle machine and beside one busy
process (``python -c "while True: pass"``), with torch's threads fixed (one per core) or
following the load (mask2former/engine/threads.py), OpenMP's spin count of waiting threads
at 10000 or its default, and optionally several numbers of data loader worker processes
(``--workers``; default: the config's DATALOADER.NUM_WORKERS), in one run.

Each measurement is a short training of configs/shapes/maskformer2_R18_shapes.yaml in its own
process (train_net.py's Trainer, ``--iters`` iterations on a generated shapes dataset);
s/iter is the median of Detectron2's per-iteration times after the first ``--skip``. The
conditions alternate for ``--rounds`` rounds, so all see the same background load.

    python benchmarks/bench_threads.py [--iters 60] [--rounds 2] [--policies NAME ...]
                                       [--workers N ...]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "configs" / "shapes" / "maskformer2_R18_shapes.yaml"
# Thread policy -> environment: adaptive or fixed threads, OpenMP spin count of waiting threads
# (tools/main_job.py sets GOMP_SPINCOUNT=10000 before importing torch; None: OpenMP's default).
POLICIES = {
    "fixed, spin 10k": {"MASK2FORMER_ADAPTIVE_THREADS": "0", "GOMP_SPINCOUNT": "10000"},
    "adaptive, spin 10k": {"MASK2FORMER_ADAPTIVE_THREADS": "1", "GOMP_SPINCOUNT": "10000"},
    "adaptive, default spin": {"MASK2FORMER_ADAPTIVE_THREADS": "1", "GOMP_SPINCOUNT": None},
}


def train_child(data_root, output, iters, skip, workers):
    """
    Train ``iters`` iterations with ``workers`` loader processes (None: the config's); print the
    median s/iter after ``skip`` as JSON.
    """
    sys.path.insert(0, str(REPO_ROOT))
    import torch
    from detectron2.utils.env import seed_all_rng

    from mask2former.config import get_maskformer2_cfg
    from mask2former.data.datasets.generated_shapes import register_generated_shapes
    from train_net import Trainer

    register_generated_shapes(data_root)
    cfg = get_maskformer2_cfg(str(CONFIG))
    cfg.OUTPUT_DIR = output
    cfg.SOLVER.MAX_ITER = iters
    cfg.SOLVER.CHECKPOINT_PERIOD = iters + 1
    cfg.TEST.EVAL_PERIOD = 0
    cfg.DATASETS.TEST = ()
    if workers is not None:
        cfg.DATALOADER.NUM_WORKERS = workers
    cfg.freeze()
    seed_all_rng(cfg.SEED)  # the same initial weights in every condition
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    with open(os.path.join(output, "metrics.json")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    times = [r["time"] for r in records if "time" in r and r["iteration"] >= skip]
    print(json.dumps({"s_per_iter": statistics.median(times), "threads": torch.get_num_threads()}))


def measure(policy, workers, busy, args, data_root):
    env = dict(os.environ)
    for key, value in POLICIES[policy].items():
        env.pop(key, None)
        if value is not None:
            env[key] = value
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        with tempfile.TemporaryDirectory() as output:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", data_root, output,
                 "--iters", str(args.iters), "--skip", str(args.skip)]
                + ([] if workers is None else ["--workers", str(workers)]),
                env=env, capture_output=True, text=True, check=True,
            )
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _workers_name(workers):
    return "config's" if workers is None else str(workers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--skip", type=int, default=20, help="iterations left out (warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--policies", nargs="+", choices=list(POLICIES), default=list(POLICIES),
        help="thread policies to measure (default: all)",
    )
    parser.add_argument(
        "--workers", nargs="+", type=int, default=[None],
        help="DATALOADER.NUM_WORKERS values to measure (default: the config's)",
    )
    parser.add_argument("--child", nargs=2, metavar=("DATA_ROOT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        train_child(*args.child, args.iters, args.skip, args.workers[0])
        return

    sys.path.insert(0, str(REPO_ROOT))
    from mask2former.data.datasets.generated_shapes import generate_shapes_dataset

    data_root = os.path.join(tempfile.gettempdir(), "m2f_bench_threads_shapes")
    generate_shapes_dataset(data_root, seed=0, num_train=200, num_val=2)
    conditions = [(policy, workers) for policy in args.policies for workers in args.workers]
    results = {}
    for round_index in range(args.rounds):
        for busy in (False, True):
            for policy, workers in conditions:
                result = measure(policy, workers, busy, args, data_root)
                key = (policy, workers, busy)
                results.setdefault(key, []).append(result["s_per_iter"])
                print(f"round {round_index + 1}: {policy:22s} workers {_workers_name(workers):8s} "
                      f"{'beside a busy process' if busy else 'idle':22s} "
                      f"{result['s_per_iter']:.3f} s/iter", flush=True)
    print(f"\nload average at the end: {os.getloadavg()}")
    print("| threads | loader workers | idle s/iter | beside a busy process s/iter | slowdown |")
    print("|---|---|---:|---:|---:|")
    for policy, workers in conditions:
        idle = statistics.median(results[(policy, workers, False)])
        busy = statistics.median(results[(policy, workers, True)])
        print(f"| {policy} | {_workers_name(workers)} | {idle:.3f} | {busy:.3f} | "
              f"{busy / idle:.2f}x |")



if __name__ == "__main__":
    main()
