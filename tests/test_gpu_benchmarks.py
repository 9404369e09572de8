"""
The GPU benchmark script and the CUDA settings, on the CPU: benchmarks/bench_gpu.py in its
--cpu-smoke mode writes figures that benchmarks/gpu_targets.py tabulates, and
FLOAT32_MATMUL_PRECISION is checked and leaves a CPU run alone.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mask2former.config import get_maskformer2_cfg
from mask2former.engine import apply_cuda_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import gpu_targets  # noqa: E402


def test_bench_gpu_cpu_smoke_writes_the_figures_of_the_target_table(tmp_path):
    figures_file = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_gpu.py", "--cpu-smoke", "--only",
         "inference_default", "train_float32", "--figures", str(figures_file)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(figures_file.read_text())
    assert set(figures) == {"inference_default_ms", "train_float32_ms"}
    assert all(value > 0 for value in figures.values())
    assert set(figures) <= {key for key, *_ in gpu_targets.TARGETS}

    table, all_met = gpu_targets.format_table(figures)
    rows = {line[:50].strip(): line for line in table.splitlines()[1:]}
    assert len(rows) == len(gpu_targets.TARGETS) and not all_met
    assert f"{figures['train_float32_ms']:.3g} ms" in rows[
        "R50 training step, batch 2 of 1024^2, float32"]
    assert rows["R50 training step, fp16 autocast"].endswith("NOT MEASURED")


def test_float32_matmul_precision_is_checked_and_leaves_the_cpu_alone():
    before = torch.get_float32_matmul_precision()
    cfg = get_maskformer2_cfg(opts=["MODEL.DEVICE", "cpu", "FLOAT32_MATMUL_PRECISION", "medium"])
    apply_cuda_settings(cfg)
    assert torch.get_float32_matmul_precision() == before
    cfg.FLOAT32_MATMUL_PRECISION = "tf32"
    with pytest.raises(ValueError, match="FLOAT32_MATMUL_PRECISION='tf32'.*'high' allows TF32"):
        apply_cuda_settings(cfg)
