"""
The GPU figures that have targets (the published implementation's on one NVIDIA H200), and the
final table of ``benchmarks/gpu_check.sh``: each figure next to its target with PASS / FAIL, or
"not measured".

The figures come from JSON files ``{key: value}`` that ``gpu_check.py --figures`` (the
MSDeformAttn op) and ``bench_gpu.py --figures`` (the model) write; times are CUDA-synchronized
medians in ms, memory is the peak of ``torch.cuda.max_memory_allocated`` in GiB. The targets are
those of the published implementation (Deformable-DETR's CUDA kernel for the op; published
Mask2Former and HF transformers for the model) measured on an H200, or better.

    python benchmarks/gpu_targets.py FIGURES.json [FIGURES.json ...]

Exit status 0 when every target is met, 4 when one is missed or not measured.
"""
import json
import sys
from pathlib import Path

# (key, what is measured, unit, target: at most this; None = reported only)
TARGETS = [
    ("op_float32_1024_forward", "MSDeformAttn float32, 1024 px: forward", "ms", 0.55),
    ("op_float32_1024_forward_backward", "MSDeformAttn float32, 1024 px: fwd+bwd", "ms", 2.0),
    ("op_float32_512_forward", "MSDeformAttn float32, 512 px: forward", "ms", 0.15),
    ("op_float32_512_forward_backward", "MSDeformAttn float32, 512 px: fwd+bwd", "ms", 0.65),
    ("op_bfloat16_1024_forward", "MSDeformAttn bfloat16, 1024 px: forward", "ms", None),
    ("op_bfloat16_1024_forward_backward", "MSDeformAttn bfloat16, 1024 px: fwd+bwd", "ms", 1.5),
    ("inference_panoptic_ms", "R50 inference 800x1216, panoptic only", "ms", 30.0),
    ("inference_panoptic_peak", "R50 inference 800x1216, panoptic only: peak", "GiB", 1.3),
    ("inference_default_ms", "R50 inference 800x1216, sem+ins+pan", "ms", 36.0),
    ("inference_default_peak", "R50 inference 800x1216, sem+ins+pan: peak", "GiB", 1.5),
    ("inference_swinl_panoptic_ms", "Swin-L inference 800x1216, panoptic only", "ms", 87.0),
    ("inference_swinl_panoptic_peak", "Swin-L inference, panoptic only: peak", "GiB", 3.2),
    ("inference_panoptic_tf32_ms", "R50 inference, panoptic only, TF32 matmul", "ms", None),
    ("inference_panoptic_tf32_peak", "R50 inference, panoptic only, TF32: peak", "GiB", None),
    ("train_float32_ms", "R50 training step, batch 2 of 1024^2, float32", "ms", 185.0),
    ("train_float32_peak", "R50 training step, float32: peak", "GiB", 8.0),
    ("train_fp16_ms", "R50 training step, fp16 autocast", "ms", 160.0),
    ("train_fp16_peak", "R50 training step, fp16 autocast: peak", "GiB", None),
]


def format_table(figures):
    """(the table as text, whether every target is met) for ``figures`` {key: value}."""
    lines = [f"{'figure':<50}{'measured':>13}{'target':>14}  result"]
    all_met = True
    for key, description, unit, target in TARGETS:
        value = figures.get(key)
        measured = "not measured" if value is None else f"{value:.3g} {unit}"
        if target is None:
            limit, result = "-", "reported"
        else:
            limit = f"<= {target:g} {unit}"
            met = value is not None and value <= target
            all_met = all_met and met
            result = "PASS" if met else ("FAIL" if value is not None else "NOT MEASURED")
        lines.append(f"{description:<50}{measured:>13}{limit:>14}  {result}")
    return "\n".join(lines), all_met


def read_figures(paths):
    """The union of the figure files that exist (a step that failed may have written none)."""
    figures = {}
    for path in map(Path, paths):
        if path.is_file():
            figures.update(json.loads(path.read_text()))
    return figures


def main():
    table, all_met = format_table(read_figures(sys.argv[1:]))
    print(table)
    print("ALL TARGETS MET" if all_met else "TARGETS NOT ALL MET")
    return 0 if all_met else 4


if __name__ == "__main__":
    sys.exit(main())
