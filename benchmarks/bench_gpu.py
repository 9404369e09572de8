"""
The whole model's figures on a GPU (ours only; random weights; see BENCHMARKS.md):

* inference on one 800 x 1216 image, from a uint8 CPU tensor to the results, for R50 COCO
  panoptic (configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml) with panoptic
  output only, with the config's default outputs (semantic, instance and panoptic), the same
  panoptic-only model with TF32 matrix multiplications (FLOAT32_MATMUL_PRECISION "high", reported
  only), and Swin-L COCO panoptic (swin/maskformer2_swin_large_IN21k_384_bs16_100ep.yaml) with
  panoptic output only;
* one training step of R50 COCO panoptic at batch 2 of 1024 x 1024 images with 12 random
  segments each, run by Detectron2's SimpleTrainer (float32) and AMPTrainer (fp16 autocast,
  SOLVER.AMP.ENABLED) with Mask2Former's optimizer; the batch comes in pinned memory, as the
  training loader gives it on CUDA.

Each figure builds its model afresh, runs warm-up iterations, then times iterations one by one
(``torch.cuda.synchronize`` before and after; wall clock) and reports the median; peak memory is
``torch.cuda.max_memory_allocated`` from the model's build to the last timed iteration
(weights, optimizer state and activations). PyTorch's and Detectron2's defaults stand otherwise
(float32 matmuls, cuDNN TF32 convolutions, no cuDNN benchmark).

``--cpu-smoke`` runs every figure on the CPU with tiny images, one iteration each (no AMP step:
Detectron2's AMPTrainer needs CUDA), to check the script end to end on a machine without a GPU.
``--figures PATH`` writes the figures as JSON for benchmarks/gpu_targets.py.

    python benchmarks/bench_gpu.py [--figures PATH] [--cpu-smoke] [--only NAME ...]
"""
import argparse
import gc
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances
from detectron2.utils.events import EventStorage

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mask2former.config import get_maskformer2_cfg  # noqa: E402
from mask2former.engine import apply_cuda_settings  # noqa: E402
from mask2former.solver import build_optimizer  # noqa: E402

R50_PANOPTIC = "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"
SWINL_PANOPTIC = (
    "configs/coco/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_100ep.yaml"
)
PANOPTIC_ONLY = ["MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "False",
                 "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "False"]


class Settings:
    """Sizes and iteration counts: the real ones on CUDA, tiny ones for --cpu-smoke."""

    def __init__(self, cpu_smoke):
        self.device = "cpu" if cpu_smoke else "cuda"
        self.inference_size = (64, 96) if cpu_smoke else (800, 1216)
        self.train_size = 64 if cpu_smoke else 1024
        self.warmup, self.inference_reps, self.train_reps = (0, 1, 1) if cpu_smoke else (3, 20, 8)


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed_median(step, warmup, reps, device):
    """Runs ``step`` ``warmup`` times, then times ``reps`` synchronized runs; median in ms."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def fresh_model(config_file, opts, device, train):
    """(cfg, model with random weights on ``device``), the CUDA peak memory counter reset."""
    gc.collect()  # the previous figure's model and trainer
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    cfg = get_maskformer2_cfg(str(REPO_ROOT / config_file),
                              ["MODEL.WEIGHTS", "", "MODEL.DEVICE", device, *opts])
    torch.manual_seed(0)
    model = build_model(cfg)
    return cfg, model.train(train)


def peak_gib(device):
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def inference_figures(settings, config_file, opts, matmul_precision=""):
    """(median ms, peak GiB) of inference on one image at ``settings.inference_size``."""
    cfg, model = fresh_model(config_file, opts, settings.device, train=False)
    cfg.FLOAT32_MATMUL_PRECISION = matmul_precision
    height, width = settings.inference_size
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    inputs = [{"image": image, "height": height, "width": width}]
    previous_precision = torch.get_float32_matmul_precision()
    apply_cuda_settings(cfg)
    try:
        with torch.no_grad():
            ms = timed_median(lambda: model(inputs), settings.warmup, settings.inference_reps,
                              settings.device)
    finally:
        torch.set_float32_matmul_precision(previous_precision)
    return ms, peak_gib(settings.device)


def training_batch(size, num_classes, device, segments=12, batch=2):
    """``batch`` model inputs of ``size`` x ``size`` with ``segments`` random rectangles each;
    the tensors in pinned memory on CUDA, as the training loader gives them."""
    generator = torch.Generator().manual_seed(0)
    inputs = []
    for _ in range(batch):
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
        corners = torch.randint(0, size // 2, (segments, 2), generator=generator)
        extents = torch.randint(size // 8, size // 2, (segments, 2), generator=generator)
        masks = torch.zeros(segments, size, size, dtype=torch.bool)
        for mask, (y, x), (h, w) in zip(masks, corners.tolist(), extents.tolist()):
            mask[y:y + h, x:x + w] = True
        instances = Instances((size, size))
        instances.gt_classes = torch.randint(0, num_classes, (segments,), generator=generator)
        instances.gt_masks = BitMasks(masks)
        if device == "cuda":
            image = image.pin_memory()
        inputs.append({"image": image, "instances": instances})
    return inputs


def training_figures(settings, amp):
    """(median ms, peak GiB) of one training step of R50 COCO panoptic."""
    cfg, model = fresh_model(R50_PANOPTIC, [], settings.device, train=True)
    batch = training_batch(settings.train_size, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
                           settings.device)
    trainer_class = AMPTrainer if amp else SimpleTrainer
    trainer = trainer_class(model, itertools.repeat(batch), build_optimizer(cfg, model))
    with EventStorage(0):
        ms = timed_median(trainer.run_step, settings.warmup, settings.train_reps,
                          settings.device)
    return ms, peak_gib(settings.device)


def measure(settings, only):
    """{figure key: value} for the figures in ``only`` (all when empty)."""
    runs = {
        "inference_panoptic": lambda: inference_figures(settings, R50_PANOPTIC, PANOPTIC_ONLY),
        "inference_panoptic_tf32": lambda: inference_figures(settings, R50_PANOPTIC,
                                                             PANOPTIC_ONLY, "high"),
        "inference_default": lambda: inference_figures(settings, R50_PANOPTIC, []),
        "inference_swinl_panoptic": lambda: inference_figures(settings, SWINL_PANOPTIC,
                                                              PANOPTIC_ONLY),
        "train_float32": lambda: training_figures(settings, amp=False),
        "train_fp16": lambda: training_figures(settings, amp=True),
    }
    figures = {}
    for name, run in runs.items():
        if only and name not in only:
            continue
        if name == "train_fp16" and settings.device != "cuda":
            print(f"{name}: skipped (AMPTrainer needs CUDA)")
            continue
        start = time.perf_counter()
        ms, peak = run()
        figures[f"{name}_ms"] = ms
        if peak is not None:
            figures[f"{name}_peak"] = peak
        print(f"{name}: {ms:.1f} ms" + ("" if peak is None else f", peak {peak:.2f} GiB")
              + f" [{time.perf_counter() - start:.0f} s]", flush=True)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny sizes on the CPU, to check the script without a GPU")
    parser.add_argument("--figures", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("--only", nargs="*", default=[], help="figure names to run (default all)")
    args = parser.parse_args()
    settings = Settings(args.cpu_smoke)
    if settings.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("bench_gpu.py: CUDA is not available (use --cpu-smoke without a GPU)")
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    figures = measure(settings, args.only)
    if args.figures is not None:
        args.figures.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
