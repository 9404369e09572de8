"""
Check the native MSDeformAttn op's CUDA kernels on a GPU machine in one run: build, equality with
the PyTorch implementation and the native CPU op, gradcheck, opcheck, and the benchmark.

Run it through ``bash benchmarks/gpu_check.sh`` (which also prints the driver and toolkit
versions and runs the small cases under compute-sanitizer); see BENCHMARKS.md.

Steps (exit status 1 when a check fails, 2 when the build fails or nvcc is missing, 3 when CUDA
is not available):

1. Build the op with ``setup.py build_ext`` into ``--build-dir`` (default build/gpu_check), with
   FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST=9.0 (unless set) and CUDA_HOME = the toolkit of the ``nvcc``
   on PATH; ``--force`` with ninja rebuilds only what changed, so a rerun on a warm machine is
   quick.
2. The CUDA native op's output and its three gradients against the PyTorch implementation (on
   CPU and on CUDA) and the native CPU op, float32, within 1e-5 of max(1, |expected|.max()): the
   cases of tests/test_ms_deform_attn_native.py (batch 1, odd level sizes, locations in
   [-0.3, 1.3]), non-contiguous value with points all outside, and one case per path of the
   CUDA kernels (ms_deform_attn_cuda.cu: 16-byte channel vectors with 1 to 32 lanes per
   (batch, query, head), idle lanes, lanes looping over wide heads; one channel per lane for odd
   channel counts and misaligned tensors).
3. Shapes large enough that the kernels' grid-stride loops turn (sized from the GPU's
   multiprocessor count): float64 with any locations (in float32 a location that rounds onto the
   other side of a cell edge changes its gradient by a whole cell's difference, so float32 is
   compared only on locations away from cell edges).
4. float16 and bfloat16 (vector and one-channel paths): the native op on CUDA and the PyTorch
   implementation on CUDA in the same dtype, both against a float64 evaluation of the same
   (rounded) inputs; the native op's error must be no worse than the PyTorch implementation's,
   or than one unit of rounding of the dtype at the tensor's scale.
5. ``torch.autograd.gradcheck`` in float64 (one-channel and vector paths) and
   ``torch.library.opcheck`` on CUDA; the dispatching ``ms_deform_attn`` picks the native op on
   CUDA; mixed devices raise a clear error.
6. The benchmark of benchmarks/bench_ms_deform_attn.py at the pixel decoder's shapes for 512 and
   1024 px inputs on CUDA: native vs PyTorch, forward and forward+backward, interleaved
   synchronized medians, float32 and bfloat16; ``--figures PATH`` writes the native figures as
   JSON for benchmarks/gpu_targets.py.

Importing the op without Detectron2: mask2former/__init__.py imports Detectron2, which the GPU
machine lacks, so the ops package is imported from its file under its own name
(``mask2former.modeling.pixel_decoder.ops``) with importlib's recipe for importing a source file
directly (spec_from_file_location, module_from_spec, an entry in sys.modules, exec_module), its
search path being the build folder and then its source folder. Its relative imports and its
lookup of ``_C`` resolve inside it, its parents' __init__ files never run, and the test and
benchmark modules' ``from mask2former.modeling.pixel_decoder.ops import ...`` find it in
sys.modules, so their helpers are reused as they are.

``--cpu-only`` is a dry run for a machine without a GPU: the same build (with the CUDA kernels
when nvcc is found) and the same checks with the CPU standing in for CUDA; without it, a machine
where CUDA is not available fails. ``--sanitize`` runs only the small cases (steps 2 and 4)
against an existing build (for compute-sanitizer).

    python benchmarks/gpu_check.py [--cpu-only] [--sanitize] [--build-dir DIR] [--reps N] \
        [--figures PATH]
"""
import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
OPS_PACKAGE = "mask2former.modeling.pixel_decoder.ops"
OPS_DIR = REPO_ROOT / "mask2former" / "modeling" / "pixel_decoder" / "ops"
EQUAL_TOL = 1e-5  # float32, as in tests/test_ms_deform_attn_native.py
FLOAT64_TOL = 1e-9
# The CUDA kernels' grid cap: kMaxBlocksPerMultiprocessor in ms_deform_attn_cuda.cu (blocks of
# 8 warps).
KERNEL_MAX_BLOCKS_PER_SM = 256

# Cases for the paths of the CUDA kernels (name: random_inputs' level_shapes, batch, queries,
# heads, channels, points), float32 (16-byte vectors of 4 channels when C % 4 == 0).
KERNEL_PATH_CASES = {
    "4 channels: one lane per (b, q, h), 32 per warp": ([(5, 6), (3, 2)], 2, 9, 3, 4, 2),
    "16 channels: 4 lanes": ([(6, 5)], 1, 11, 2, 16, 3),
    "24 channels: 6 vectors on 8 lanes, 2 idle": ([(7, 4), (2, 3)], 2, 10, 2, 24, 2),
    "256 channels, one head: 32 lanes of 2 vectors": ([(5, 5), (3, 3)], 1, 6, 1, 256, 2),
}
# float16 / bfloat16 cases: 16-byte vectors of 8 channels (2 and 4 lanes) and one channel.
REDUCED_PRECISION_CASES = {
    "16 channels": ([(9, 7), (4, 4)], 2, 40, 2, 16, 4),
    "32 channels": ([(16, 16), (8, 8), (4, 4)], 2, 336, 8, 32, 4),
    "5 channels": ([(7, 5), (3, 3), (2, 1), (1, 1)], 2, 21, 3, 5, 3),
}


def nvcc_toolkit_root():
    """The CUDA toolkit folder of the ``nvcc`` on PATH, as nvcc itself reports it (its
    ``_HERE_`` is its own bin folder, also when PATH holds a link or a wrapper script); None
    without nvcc."""
    try:
        dry_run = subprocess.run(["nvcc", "--dryrun", "-c", "-x", "cu", os.devnull, "-o",
                                  os.devnull], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return None
    for line in (dry_run.stdout + dry_run.stderr).splitlines():
        if line.startswith("#$ _HERE_="):
            return Path(line.split("=", 1)[1]).parent
    return None


def build(build_dir, with_cuda):
    """Builds the op into ``build_dir``/lib with setup.py; returns the folder holding ``_C``.
    The compiler output goes to ``build_dir``/build.log; exits with status 2 on failure."""
    env = {**os.environ, "MAX_JOBS": os.environ.get("MAX_JOBS", str(os.cpu_count()))}
    if with_cuda:
        env.update(FORCE_CUDA="1", CUDA_HOME=str(with_cuda),
                   TORCH_CUDA_ARCH_LIST=os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0"))
        print(f"building with CUDA: CUDA_HOME={env['CUDA_HOME']}, "
              f"TORCH_CUDA_ARCH_LIST={env['TORCH_CUDA_ARCH_LIST']}, MAX_JOBS={env['MAX_JOBS']}")
    else:
        print(f"building without CUDA (no nvcc found), MAX_JOBS={env['MAX_JOBS']}")
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    command = [sys.executable, "setup.py", "build_ext", "--force",
               "--build-lib", str(build_dir / "lib"), "--build-temp", str(build_dir / "temp")]
    start = time.perf_counter()
    with open(log, "w") as log_file:
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - start
    lib_dir = build_dir / "lib" / OPS_DIR.relative_to(REPO_ROOT)
    libraries = sorted(lib_dir.glob("_C*.so"))
    if result.returncode != 0 or not libraries:
        print(log.read_text()[-8000:])
        print(f"FAIL build: {' '.join(command)} exited {result.returncode} after {elapsed:.0f} s "
              f"(log above, in full in {log})")
        sys.exit(2)
    print(f"build: {elapsed:.1f} s wall ({libraries[-1].name}; log in {log})")
    return lib_dir


def import_ops_package(lib_dir):
    """Imports the ops package under its own name without its parents (see the module
    docstring), ``_C`` from ``lib_dir``; returns it."""
    spec = importlib.util.spec_from_file_location(
        OPS_PACKAGE, OPS_DIR / "__init__.py", submodule_search_locations=[str(lib_dir),
                                                                         str(OPS_DIR)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[OPS_PACKAGE] = package
    spec.loader.exec_module(package)
    return package


class Checks:
    """Runs named checks, prints PASS/FAIL lines, and counts failures."""

    def __init__(self):
        self.failed = []

    def run(self, name, fn, *args):
        start = time.perf_counter()
        try:
            detail = fn(*args)
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # a kernel fault shows up in the check that caused it
        except Exception as error:  # any failure of the checked code is a failed check
            self.failed.append(name)
            print(f"FAIL {name}: {type(error).__name__}: {error}")
            traceback.print_exc(limit=-3, file=sys.stdout)
            return
        print(f"PASS {name}{f' ({detail})' if detail else ''} "
              f"[{time.perf_counter() - start:.1f} s]")


def to_device(inputs, device, grad_indices=()):
    """The tensors moved to ``device``, as a tuple; those at ``grad_indices`` require grad."""
    return tuple(t.to(device).requires_grad_(i in grad_indices) for i, t in enumerate(inputs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-only", action="store_true",
                        help="dry run without a GPU: the CPU stands in for CUDA")
    parser.add_argument("--sanitize", action="store_true",
                        help="only the small equality cases, against the existing build")
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / "build" / "gpu_check")
    parser.add_argument("--reps", type=int, default=None,
                        help="benchmark rounds (default 50 on CUDA, 2 with --cpu-only)")
    parser.add_argument("--figures", type=Path, default=None,
                        help="write the native op's benchmark figures (ms) here, as JSON")
    args = parser.parse_args()
    build_dir = args.build_dir.resolve()
    device = "cpu" if args.cpu_only else "cuda"

    print(f"python {sys.version.split()[0]} ({sys.executable}), torch {torch.__version__} "
          f"(CUDA {torch.version.cuda}), cuda available: {torch.cuda.is_available()}")
    if device == "cuda":
        if not torch.cuda.is_available():
            print("FAIL CUDA is not available (use --cpu-only for a dry run without a GPU)")
            return 3
        try:
            torch.zeros(1, device=device)
        except RuntimeError as error:  # e.g. a device that compute-sanitizer does not support
            print(f"FAIL cannot allocate on the GPU: {error}")
            return 3
        properties = torch.cuda.get_device_properties(0)
        print(f"GPU: {properties.name}, capability {properties.major}.{properties.minor}, "
              f"{properties.multi_processor_count} SMs, {properties.total_memory / 2**30:.0f} GiB")

    cuda_root = nvcc_toolkit_root()
    if device == "cuda" and cuda_root is None:
        print("FAIL no nvcc on PATH: the CUDA kernels cannot be built")
        return 2
    if args.sanitize:
        lib_dir = build_dir / "lib" / OPS_DIR.relative_to(REPO_ROOT)
    else:
        lib_dir = build(build_dir, cuda_root)

    ops = import_ops_package(lib_dir)
    sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT / "benchmarks")]
    import bench_ms_deform_attn as bench
    import test_ms_deform_attn_native as native_tests
    native_module = importlib.import_module(f"{OPS_PACKAGE}.ms_deform_attn_native")

    if "mask2former" in sys.modules or "detectron2" in sys.modules:
        print("FAIL importing the ops package ran mask2former/__init__.py (Detectron2)")
        return 1
    loaded = native_module._C
    print(f"loaded _C: {None if loaded is None else loaded.__file__} "
          f"(error: {native_module.NATIVE_OP_ERROR}), has_cuda: "
          f"{None if loaded is None else loaded.has_cuda()}")
    if loaded is None or not Path(loaded.__file__).is_relative_to(lib_dir):
        print(f"FAIL the op did not load from {lib_dir}")
        return 1
    if not ops.native_op_available(device):
        print(f"FAIL the built op has no {device} kernel")
        return 1

    native, pytorch = ops.ms_deform_attn_native, ops.ms_deform_attn_pytorch
    random_inputs, output_and_grads = native_tests.random_inputs, native_tests.output_and_grads
    checks = Checks()

    def compare(actual, expected, tol):
        """Asserts (output, grads) of ``actual`` within ``tol`` of ``expected`` with the test's
        assert_close_scaled; returns the worst scaled error, for the report."""
        worst = 0.0
        for name, a, e in zip(native_tests.NAMES, actual, expected):
            assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != {tuple(e.shape)}"
            a, e = a.detach().cpu().to(e.dtype), e.detach().cpu()
            native_tests.assert_close_scaled(a, e, tol, name)
            worst = max(worst, (a - e).abs().max().item() / max(1.0, e.abs().max().item()))
        return worst

    def equal_to_references(inputs, against_cpu=True, tol=EQUAL_TOL):
        """The native op on ``device`` against the PyTorch implementation on ``device`` and, when
        ``against_cpu``, the PyTorch implementation and the native op on CPU."""
        tested = output_and_grads(native, *to_device(inputs, device))
        for result in tested:
            assert result.device.type == device and result.dtype == inputs[0].dtype
        references = {f"pytorch-{device}": (pytorch, device)}
        if against_cpu:
            references.update({"pytorch-cpu": (pytorch, "cpu"), "native-cpu": (native, "cpu")})
        errors = {name: compare(tested, output_and_grads(fn, *to_device(inputs, on)), tol)
                  for name, (fn, on) in references.items()}
        return "worst scaled error " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items())

    for seed, case in enumerate(sorted(native_tests.CASES)):
        inputs = random_inputs(*native_tests.CASES[case], seed=seed)
        checks.run(f"{device} float32 equal: {case}", equal_to_references, inputs)

    def noncontiguous_and_outside():
        value, shapes, starts, locations, weights = random_inputs([(5, 4), (2, 3)], 2, 7, 2, 6,
                                                                  2, seed=3)
        locations[:, :3] += 5.0  # every point of the first queries lies far outside every level
        value = value.to(device).transpose(1, 2).contiguous().transpose(1, 2)
        assert not value.is_contiguous()
        output = native(value, shapes.to(device), starts.to(device), locations.to(device),
                        weights.to(device))
        assert output[:, :3].abs().max() == 0, "points outside every level read nonzero"
        return equal_to_references([value, shapes, starts, locations, weights])

    checks.run(f"{device} float32 equal: non-contiguous value, points all outside",
               noncontiguous_and_outside)

    def kernel_path(case):
        return equal_to_references(random_inputs(*KERNEL_PATH_CASES[case], seed=12))

    for case in KERNEL_PATH_CASES:
        checks.run(f"{device} float32 equal: {case}", kernel_path, case)

    def misaligned_copy(tensor):
        """A contiguous copy of ``tensor`` one element past a fresh allocation, so not 16-byte
        aligned: the kernels take their one-channel path."""
        buffer = torch.empty(tensor.numel() + 1, dtype=tensor.dtype, device=tensor.device)
        copy = buffer[1:].view(tensor.shape).copy_(tensor)
        assert copy.is_contiguous() and copy.data_ptr() % 16 != 0
        return copy

    def misaligned_value():
        value, shapes, starts, locations, weights = to_device(
            random_inputs([(6, 7), (3, 4)], 2, 12, 2, 32, 3, seed=13), device)
        grad_output = torch.randn(2, 12, 64, generator=torch.Generator().manual_seed(13))
        expected = output_and_grads(pytorch, value, shapes, starts, locations, weights,
                                    grad_output=grad_output)
        leaves = [misaligned_copy(value).requires_grad_(), locations.clone().requires_grad_(),
                  weights.clone().requires_grad_()]
        output = native(leaves[0], shapes, starts, leaves[1], leaves[2])
        grads = torch.autograd.grad(output, leaves, misaligned_copy(grad_output.to(output)))
        return f"worst scaled error {compare((output,) + grads, expected, EQUAL_TOL):.1e}"

    checks.run(f"{device} float32 equal: 32 channels, misaligned value and output gradient",
               misaligned_value)

    def shapes_on_cpu():
        value, shapes, starts, locations, weights = random_inputs(
            *native_tests.CASES["pixel_decoder_like"], seed=14)
        value, locations, weights = to_device([value, locations, weights], device)
        tested = output_and_grads(native, value, shapes, starts, locations, weights)
        expected = output_and_grads(pytorch, value, *to_device([shapes, starts], device),
                                    locations, weights)
        return f"worst scaled error {compare(tested, expected, EQUAL_TOL):.1e}"

    checks.run(f"{device} float32 equal: spatial_shapes and level_start_index on the CPU",
               shapes_on_cpu)

    def max_errors(results, exact):
        """{name: max |result - exact|}, in float64 on CPU."""
        return {name: (r.detach().cpu().double() - e).abs().max().item()
                for name, r, e in zip(native_tests.NAMES, results, exact)}

    def reduced_precision(dtype, case):
        _, batch, queries, heads, channels, _ = REDUCED_PRECISION_CASES[case]
        inputs = random_inputs(*REDUCED_PRECISION_CASES[case], seed=4, dtype=dtype)
        grad_output = torch.randn(batch, queries, heads * channels, dtype=dtype,
                                  generator=torch.Generator().manual_seed(4))
        exact = output_and_grads(
            pytorch, *[t.double() if t.is_floating_point() else t for t in inputs],
            grad_output=grad_output.double())
        tested = output_and_grads(native, *to_device(inputs, device), grad_output=grad_output)
        assert all(t.dtype == dtype for t in tested), [t.dtype for t in tested]
        baseline = output_and_grads(pytorch, *to_device(inputs, device), grad_output=grad_output)
        native_errors, pytorch_errors = max_errors(tested, exact), max_errors(baseline, exact)
        rounding = torch.finfo(dtype).eps
        worse = []
        for name, expected in zip(native_tests.NAMES, exact):
            bound = max(pytorch_errors[name], rounding * max(1.0, expected.abs().max().item()))
            if native_errors[name] > bound:
                worse.append(f"{name}: native {native_errors[name]:.3g} > {bound:.3g}")
        assert not worse, "; ".join(worse)
        return "max error native / pytorch vs float64: " + ", ".join(
            f"{name} {native_errors[name]:.2g} / {pytorch_errors[name]:.2g}"
            for name in native_tests.NAMES)

    for dtype in (torch.float16, torch.bfloat16):
        for case in REDUCED_PRECISION_CASES:
            checks.run(f"{device} {dtype} {case}: no worse than the PyTorch implementation "
                       "against float64", reduced_precision, dtype, case)

    if args.sanitize:
        return report(checks)

    if device == "cuda":
        def grid_stride_queries(heads, items_per_warp):
            """Queries (batch 1) for 1.3 rounds of the kernels' largest grid on this GPU."""
            multiprocessors = torch.cuda.get_device_properties(0).multi_processor_count
            items_per_round = multiprocessors * KERNEL_MAX_BLOCKS_PER_SM * 8 * items_per_warp
            return int(1.3 * items_per_round / heads)

        def grid_stride_float64():
            # 4 channels of float64: 2 lanes per (b, q, h), 16 per warp.
            inputs = random_inputs([(61, 67)], 1, grid_stride_queries(4, 16), 4, 4, 4, seed=11,
                                   dtype=torch.float64)
            return equal_to_references(inputs, against_cpu=False, tol=FLOAT64_TOL)

        checks.run("cuda float64 equal: grid-stride loops", grid_stride_float64)

        def grid_stride_float32_off_edges():
            # 32 channels of float32 at the 512 px pixel decoder's levels: 8 lanes per
            # (b, q, h), 4 per warp. Locations sit 0.1 to 0.9 of a cell from the corners (and
            # up to one cell outside), so float32 rounding moves none across a cell edge.
            value, shapes, starts, _, weights = random_inputs(
                [(64, 64), (32, 32), (16, 16)], 1, grid_stride_queries(8, 4), 8, 32, 4, seed=15)
            generator = torch.Generator().manual_seed(15)
            sizes = shapes.flip(-1).to(torch.float64)[:, None, :]  # (L, 1, 2) as (W, H)
            cells = torch.rand(*weights.shape, 2, generator=generator, dtype=torch.float64)
            cells = (cells * (sizes + 1)).floor() - 1  # left / top corner in [-1, size - 1]
            fractions = 0.1 + 0.8 * torch.rand(cells.shape, generator=generator,
                                               dtype=torch.float64)
            locations = ((cells + fractions + 0.5) / sizes).float()
            return equal_to_references([value, shapes, starts, locations, weights],
                                       against_cpu=False)

        checks.run("cuda float32 equal: grid-stride loops, locations off cell edges",
                   grid_stride_float32_off_edges)
    else:
        print("SKIP grid-stride loop cases (CUDA only)")

    def gradcheck(level_shapes, batch, queries, heads, channels, points, seed):
        inputs = to_device(random_inputs(level_shapes, batch, queries, heads, channels, points,
                                         seed=seed, dtype=torch.float64), device, (0, 3, 4))
        # The CUDA backward adds value gradients with atomics, in no fixed order: two runs may
        # differ in the last bits (nondet_tol).
        assert torch.autograd.gradcheck(native, inputs, eps=1e-6, atol=1e-5, nondet_tol=1e-12)

    checks.run(f"{device} gradcheck float64 (as the CPU test)", gradcheck,
               [(4, 3), (2, 2)], 2, 3, 2, 3, 2, 5)
    checks.run(f"{device} gradcheck float64 (batch 1, odd levels)", gradcheck,
               [(3, 5), (2, 1), (1, 1)], 1, 4, 2, 3, 3, 10)
    checks.run(f"{device} gradcheck float64 (4 channels: 16-byte vectors)", gradcheck,
               [(4, 3), (3, 2)], 2, 3, 2, 4, 2, 16)

    def opcheck():
        inputs = to_device(random_inputs([(4, 5), (2, 2)], 2, 6, 2, 4, 2, seed=6), device,
                           (0, 3, 4))
        results = torch.library.opcheck(torch.ops.mask2former.ms_deform_attn_forward.default,
                                        inputs)
        return ", ".join(f"{name} {outcome}" for name, outcome in results.items())

    checks.run(f"{device} torch.library.opcheck", opcheck)

    def dispatch_picks_native():
        inputs = to_device(random_inputs(*native_tests.CASES["odd_levels"], seed=9), device)
        assert torch.equal(ops.ms_deform_attn(*inputs), native(*inputs))

    checks.run(f"{device} ms_deform_attn dispatches to the native op", dispatch_picks_native)

    if device == "cuda":
        def mixed_devices_raise():
            value, shapes, starts, locations, weights = random_inputs([(4, 5)], 1, 3, 2, 4, 2,
                                                                      seed=8)
            try:
                native(value.cuda(), shapes, starts, locations, weights.cuda())
            except RuntimeError as error:
                assert "must be on one device" in str(error), str(error)
                return str(error).splitlines()[0]
            raise AssertionError("no error for sampling_locations on CPU with value on CUDA")

        checks.run("cuda mixed devices raise a clear error", mixed_devices_raise)
    else:
        print("SKIP mixed devices raise a clear error (CUDA only)")

    reps = args.reps or (2 if args.cpu_only else 50)
    figures = {}

    def benchmark(dtype, image_size):
        medians = bench.interleaved_medians(reps, getattr(torch, dtype), device, image_size)
        print(f"MSDeformAttn, {bench.describe_shape(image_size)}, {dtype}, {device}, {reps} "
              "interleaved reps, synchronized wall-clock medians")
        print(bench.format_medians(medians))
        for case, median in medians.items():
            figures[f"op_{dtype}_{image_size}_{case.replace('+', '_')}"] = median["native"] * 1e3

    # The dry run on a CPU stays at the smaller shape.
    for image_size in (512,) if args.cpu_only else (512, 1024):
        for dtype in ("float32", "bfloat16"):
            checks.run(f"{device} benchmark {dtype} {image_size} px", benchmark, dtype,
                       image_size)
    if args.figures is not None and device == "cuda":
        args.figures.write_text(json.dumps(figures, indent=1))
    return report(checks)


def report(checks):
    if checks.failed:
        print(f"FAILED {len(checks.failed)} check(s): {', '.join(checks.failed)}")
        return 1
    print("ALL CHECKS PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
