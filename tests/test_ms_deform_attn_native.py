"""
The native MSDeformAttn op (C++ CPU kernel; CUDA kernel compile check) against the PyTorch
implementation, its autograd and torch.compile registrations, and the dispatch in ``ops``.
"""
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mask2former.modeling.pixel_decoder.ops import (
    ms_deform_attn,
    ms_deform_attn_native,
    ms_deform_attn_pytorch,
    native_op_available,
)
from mask2former.modeling.pixel_decoder.ops.ms_deform_attn_native import NATIVE_OP_ERROR

REPO_ROOT = Path(__file__).resolve().parents[1]

requires_native = pytest.mark.skipif(
    not native_op_available("cpu"), reason=f"native op not built: {NATIVE_OP_ERROR}"
)


def random_inputs(level_shapes, batch, queries, heads, channels, points, seed,
                  dtype=torch.float32):
    """Inputs of the op; locations in [-0.3, 1.3], so many samples fall partly outside."""
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(level_shapes, dtype=torch.int64)
    level_start_index = torch.cat(
        (spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1])
    )
    len_in = int(spatial_shapes.prod(1).sum())
    levels = len(level_shapes)
    value = torch.randn(batch, len_in, heads, channels, generator=generator, dtype=dtype)
    locations = torch.rand(batch, queries, heads, levels, points, 2, generator=generator,
                           dtype=dtype) * 1.6 - 0.3
    weights = torch.rand(batch, queries, heads, levels, points, generator=generator, dtype=dtype)
    return value, spatial_shapes, level_start_index, locations, weights


def output_and_grads(fn, value, spatial_shapes, level_start_index, locations, weights, seed=0,
                     grad_output=None):
    """(output, grad_value, grad_locations, grad_weights) for ``grad_output`` (default: a random
    output gradient drawn with ``seed``), which is cast to the output's dtype and device."""
    leaves = [t.detach().clone().requires_grad_() for t in (value, locations, weights)]
    output = fn(leaves[0], spatial_shapes, level_start_index, leaves[1], leaves[2])
    if grad_output is None:
        grad_output = torch.randn(output.shape, generator=torch.Generator().manual_seed(seed),
                                  dtype=output.dtype)
    grads = torch.autograd.grad(output, leaves, grad_output.to(output))
    return (output.detach(),) + grads


def assert_close_scaled(actual, expected, tol, name):
    """|actual - expected| <= tol * max(1, |expected|.max()) elementwise."""
    scale = max(1.0, expected.abs().max().item())
    error = (actual - expected).abs().max().item()
    assert error <= tol * scale, f"{name}: max error {error:.3g} > {tol} * {scale:.3g}"


NAMES = ("output", "grad_value", "grad_sampling_locations", "grad_attention_weights")

CASES = {
    # name: (level_shapes, batch, queries, heads, channels, points)
    "batch1": ([(6, 9), (3, 5), (1, 2)], 1, 13, 2, 8, 4),
    "odd_levels": ([(7, 5), (3, 3), (2, 1), (1, 1)], 2, 21, 3, 5, 3),
    "one_level_wide_channels": ([(11, 4)], 3, 9, 1, 37, 2),
    "pixel_decoder_like": ([(16, 16), (8, 8), (4, 4)], 2, 336, 8, 32, 4),
}


@pytest.mark.skipif(os.environ.get("MASK2FORMER_MS_DEFORM_ATTN") == "pytorch",
                    reason="native op turned off with MASK2FORMER_MS_DEFORM_ATTN=pytorch")
def test_native_op_is_built():
    assert native_op_available("cpu"), (
        f"the native MSDeformAttn op did not load ({NATIVE_OP_ERROR}); build it with "
        "`pip install --no-build-isolation -e .`"
    )


@requires_native
@pytest.mark.parametrize("case", sorted(CASES))
def test_native_cpu_equals_pytorch_float32(case):
    inputs = random_inputs(*CASES[case], seed=sorted(CASES).index(case))
    native = output_and_grads(ms_deform_attn_native, *inputs)
    reference = output_and_grads(ms_deform_attn_pytorch, *inputs)
    for name, actual, expected in zip(NAMES, native, reference):
        assert actual.shape == expected.shape and actual.dtype == expected.dtype, name
        assert_close_scaled(actual, expected, 1e-5, name)


@requires_native
def test_native_cpu_handles_noncontiguous_inputs_and_all_outside_points():
    value, shapes, starts, locations, weights = random_inputs(
        [(5, 4), (2, 3)], 2, 7, 2, 6, 2, seed=3
    )
    # A (B, nHeads, Len_in, C) tensor viewed as (B, Len_in, nHeads, C) is not contiguous.
    value = value.transpose(1, 2).contiguous().transpose(1, 2)
    locations[:, :3] += 5.0  # every point of the first queries lies far outside every level
    native = output_and_grads(ms_deform_attn_native, value, shapes, starts, locations, weights)
    reference = output_and_grads(ms_deform_attn_pytorch, value, shapes, starts, locations,
                                 weights)
    assert not value.is_contiguous()
    assert native[0][:, :3].abs().max() == 0
    for name, actual, expected in zip(NAMES, native, reference):
        assert_close_scaled(actual, expected, 1e-5, name)


@requires_native
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_native_cpu_reduced_precision_accumulates_in_float(dtype):
    inputs = random_inputs([(9, 7), (4, 4)], 2, 40, 2, 16, 4, seed=4, dtype=dtype)
    # One output gradient for both (randn draws other numbers in other dtypes).
    grad_output = torch.randn(2, 40, 32, generator=torch.Generator().manual_seed(0), dtype=dtype)
    native = output_and_grads(ms_deform_attn_native, *inputs, grad_output=grad_output)
    reference = output_and_grads(
        ms_deform_attn_pytorch, *[t.float() if t.is_floating_point() else t for t in inputs],
        grad_output=grad_output,
    )
    for name, actual, expected in zip(NAMES, native, reference):
        assert actual.dtype == dtype, name
        assert_close_scaled(actual.float(), expected, 2e-2, name)


@requires_native
def test_native_cpu_gradcheck_float64():
    value, shapes, starts, locations, weights = random_inputs(
        [(4, 3), (2, 2)], 2, 3, 2, 3, 2, seed=5, dtype=torch.float64
    )
    args = (value.requires_grad_(), shapes, starts, locations.requires_grad_(),
            weights.requires_grad_())
    assert torch.autograd.gradcheck(ms_deform_attn_native, args, eps=1e-6, atol=1e-5)


@requires_native
def test_native_op_registrations_pass_opcheck():
    value, shapes, starts, locations, weights = random_inputs(
        [(4, 5), (2, 2)], 2, 6, 2, 4, 2, seed=6
    )
    args = (value.requires_grad_(), shapes, starts, locations.requires_grad_(),
            weights.requires_grad_())
    torch.library.opcheck(torch.ops.mask2former.ms_deform_attn_forward.default, args)


@requires_native
def test_ms_deform_attn_under_torch_compile_fullgraph():
    value, shapes, starts, locations, weights = random_inputs(
        [(6, 5), (3, 3)], 2, 8, 2, 4, 2, seed=7
    )

    def attend(value, locations, weights):
        return ms_deform_attn(value.tanh(), shapes, starts, locations,
                              weights.softmax(-1)).square().sum()

    compiled = torch.compile(attend, backend="aot_eager", fullgraph=True)
    results = []
    for fn in (attend, compiled):
        leaves = [t.detach().clone().requires_grad_() for t in (value, locations, weights)]
        loss = fn(*leaves)
        results.append((loss.detach(),) + torch.autograd.grad(loss, leaves))
    for name, actual, expected in zip(NAMES, results[1], results[0]):
        assert_close_scaled(actual, expected, 1e-6, name)


@requires_native
def test_native_op_rejects_bad_input_clearly():
    value, shapes, starts, locations, weights = random_inputs([(4, 5), (2, 2)], 1, 3, 2, 4, 2,
                                                              seed=8)
    with pytest.raises(RuntimeError, match="spatial_shapes hold 24 values in all.*Len_in = 23"):
        ms_deform_attn_native(value[:, :23], shapes, starts, locations, weights)
    with pytest.raises(RuntimeError, match=r"level_start_index\[0\] is 1 but"):
        ms_deform_attn_native(value, shapes, starts + 1, locations, weights)
    with pytest.raises(RuntimeError, match="must share one dtype"):
        ms_deform_attn_native(value, shapes, starts, locations.double(), weights)
    with pytest.raises(RuntimeError, match="attention_weights .* must equal sampling_locations"):
        ms_deform_attn_native(value, shapes, starts, locations, weights[..., :1])


DISPATCH_SCRIPT = f"""
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
sys.path.insert(0, {str(REPO_ROOT / "tests")!r})
from test_ms_deform_attn_native import CASES, NAMES, assert_close_scaled, output_and_grads, \\
    random_inputs
from mask2former.modeling.pixel_decoder.ops import ms_deform_attn, ms_deform_attn_pytorch
inputs = random_inputs(*CASES["odd_levels"], seed=9)
for _ in range(3):
    dispatched = output_and_grads(ms_deform_attn, *inputs)
reference = output_and_grads(ms_deform_attn_pytorch, *inputs)
for name, actual, expected in zip(NAMES, dispatched, reference):
    assert_close_scaled(actual, expected, 1e-5, name)
"""


@pytest.mark.parametrize("env, expected", [
    # ATEN_CPU_CAPABILITY=default also selects the baseline (non-AVX2) native CPU kernels.
    ({"MASK2FORMER_MS_DEFORM_ATTN": "auto", "ATEN_CPU_CAPABILITY": "default"}, "native op"),
    ({"MASK2FORMER_MS_DEFORM_ATTN": "pytorch"}, "PyTorch implementation"),
])
def test_dispatch_is_correct_and_logs_its_choice_once(env, expected):
    if not native_op_available("cpu"):
        expected = "PyTorch implementation"
    result = subprocess.run([sys.executable, "-c", DISPATCH_SCRIPT], cwd=REPO_ROOT,
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    choices = [line for line in result.stdout.splitlines() if line.startswith("MSDeformAttn on")]
    assert len(choices) == 1 and expected in choices[0], result.stdout


def cuda_toolkit_root():
    """The CUDA toolkit folder: $CUDA_HOME, else the one that `nvcc` (or the wrapper script
    on PATH named nvcc) runs from; None when there is no nvcc."""
    if os.environ.get("CUDA_HOME"):
        return Path(os.environ["CUDA_HOME"])
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    nvcc = Path(nvcc).resolve()
    head = nvcc.read_bytes()[:4096]
    if head.startswith(b"#!"):
        match = re.search(rb"(/\S+)/bin/nvcc\b", head)
        return Path(match.group(1).decode()) if match else None
    return nvcc.parent.parent


def test_cuda_kernels_compile_with_force_cuda(tmp_path):
    """setup.py builds the op with its CUDA kernels when FORCE_CUDA=1, even without a GPU."""
    cuda_root = cuda_toolkit_root()
    if cuda_root is None or not (cuda_root / "bin" / "nvcc").exists():
        pytest.skip("no CUDA toolkit (nvcc) found")
    env = {**os.environ, "FORCE_CUDA": "1", "CUDA_HOME": str(cuda_root),
           "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"),
           "MAX_JOBS": os.environ.get("MAX_JOBS", "2")}
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "temp")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    (library,) = (tmp_path / "lib").rglob("_C*.so")
    # Load it in a fresh process (the op namespace can be registered once per process) without
    # importing mask2former, and check that it registered CUDA kernels for both ops.
    check = textwrap.dedent(f"""
        import torch
        torch.ops.load_library({str(library)!r})
        for op in ("forward", "backward"):
            name = "mask2former::ms_deform_attn_" + op
            for key in ("CPU", "CUDA"):
                assert torch._C._dispatch_has_kernel_for_dispatch_key(name, key), (name, key)
    """)
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
