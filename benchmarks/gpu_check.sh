#!/usr/bin/env bash
# Checks the native MSDeformAttn op's CUDA kernels and measures the GPU figures in one command,
# from the repository root: `bash benchmarks/gpu_check.sh [--cpu-only] [gpu_check.py options]`.
#
# On any Linux machine with an NVIDIA GPU, its driver, the CUDA toolkit (nvcc) of the CUDA version
# that torch was built with, and the project's environment (BENCHMARKS.md, "GPU": what to install):
#
#     PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
#
# 1. prints the GPU (nvidia-smi), nvcc, the host compiler and Python/torch versions;
# 2. runs benchmarks/gpu_check.py: builds the op with CUDA (timed), checks it against the
#    PyTorch implementation and the native CPU op, gradcheck/opcheck, and the op's benchmark
#    (see its docstring);
# 3. runs benchmarks/bench_gpu.py with the op just built: the model's inference and training
#    figures (needs Detectron2 importable by $PYTHON; capped at 300 s);
# 4. runs the small cases again under compute-sanitizer memcheck, with PyTorch's caching
#    allocator off so each tensor is its own allocation; memory errors fail the check, a
#    sanitizer that cannot run on the machine (or runs past 180 s) is reported and skipped;
# 5. prints the table of the figures next to their targets (benchmarks/gpu_targets.py), last.
#
# Exit status: 0 when everything passed and every target is met; 1 a check failed (or the
# model benchmark did not run); 2 / 3 no build / no CUDA; 4 only targets missed. The report goes
# to the screen and to $GPU_CHECK_DIR/gpu_check.txt, the build log to
# $GPU_CHECK_DIR/gpu_check_build.log and the figures to $GPU_CHECK_DIR/figures_op.json and
# $GPU_CHECK_DIR/figures_model.json (GPU_CHECK_DIR defaults to build/gpu_check). PYTHON picks the
# interpreter (default python3). --cpu-only is the dry run for a machine without a GPU (the model
# benchmark in its --cpu-smoke mode, no table).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
BUILD_DIR=build/gpu_check
FIGURES_DIR=${GPU_CHECK_DIR:-$BUILD_DIR}
OPS_DIR=mask2former/modeling/pixel_decoder/ops

run_checks() {
  local cpu_only=0 arg status bench_status sanitizer_status targets_status
  for arg in "$@"; do [[ $arg == --cpu-only ]] && cpu_only=1; done
  local start=$SECONDS
  echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), $(nproc) CPUs"
  echo "== nvidia-smi"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm \
      --format=csv || nvidia-smi
  else
    echo "nvidia-smi: not found"
  fi
  echo "== nvcc"
  if command -v nvcc >/dev/null; then nvcc --version | tail -n 2; else echo "nvcc: not found"; fi
  echo "== host compiler: $(c++ --version 2>/dev/null | head -n 1)"
  echo "== python, torch"
  "$PYTHON" -c 'import sys, torch; print(sys.executable, sys.version.split()[0], "torch",
torch.__version__, "CUDA", torch.version.cuda, "cuda available:", torch.cuda.is_available())'

  mkdir -p "$FIGURES_DIR"
  rm -f "$FIGURES_DIR/figures_op.json" "$FIGURES_DIR/figures_model.json"
  echo "== checks"
  "$PYTHON" benchmarks/gpu_check.py --build-dir "$BUILD_DIR" \
    --figures "$FIGURES_DIR/figures_op.json" "$@"
  status=$?

  echo "== model figures (benchmarks/bench_gpu.py, $((SECONDS - start)) s so far)"
  if ((cpu_only)); then
    timeout 600 "$PYTHON" benchmarks/bench_gpu.py --cpu-smoke
    bench_status=$?
  elif ((status == 2 || status == 3)); then
    echo "skipped: no build or no CUDA"
    bench_status=0
  else
    # bench_gpu.py imports mask2former as it is installed: the op goes next to its sources.
    cp "$BUILD_DIR"/lib/$OPS_DIR/_C*.so "$OPS_DIR"/
    timeout 300 "$PYTHON" benchmarks/bench_gpu.py --figures "$FIGURES_DIR/figures_model.json"
    bench_status=$?
  fi
  if ((bench_status != 0)); then
    echo "FAIL benchmarks/bench_gpu.py exited $bench_status (124: past its time limit)"
    ((status == 0)) && status=1
  fi

  echo "== compute-sanitizer memcheck (small cases, $((SECONDS - start)) s so far)"
  if ((cpu_only)); then
    echo "skipped: --cpu-only"
  elif ((status == 2 || status == 3)); then
    echo "skipped: no build or no CUDA"
  elif ! command -v compute-sanitizer >/dev/null; then
    echo "skipped: compute-sanitizer not found"
  else
    # API errors that PyTorch checks and handles itself are not memory errors: not reported.
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 180 compute-sanitizer --tool memcheck \
      --report-api-errors no --error-exitcode 99 \
      "$PYTHON" benchmarks/gpu_check.py --build-dir "$BUILD_DIR" --sanitize
    sanitizer_status=$?
    if ((sanitizer_status == 99)); then
      echo "FAIL compute-sanitizer memcheck found memory errors"
      ((status == 0)) && status=1
    elif ((sanitizer_status == 1)); then
      echo "FAIL a check failed under compute-sanitizer"
      ((status == 0)) && status=1
    elif ((sanitizer_status == 124)); then
      echo "compute-sanitizer run timed out after 180 s: not counted"
    elif ((sanitizer_status != 0)); then
      echo "compute-sanitizer could not run here (exit $sanitizer_status): not counted"
    else
      echo "PASS compute-sanitizer memcheck: no memory errors"
    fi
  fi

  echo "== figures against targets (benchmarks/gpu_targets.py; $((SECONDS - start)) s in all)"
  if ((cpu_only)); then
    echo "skipped: --cpu-only (the targets are GPU figures)"
  else
    "$PYTHON" benchmarks/gpu_targets.py "$FIGURES_DIR/figures_op.json" \
      "$FIGURES_DIR/figures_model.json"
    targets_status=$?
    ((status == 0 && targets_status != 0)) && status=$targets_status
  fi
  echo "== gpu_check: exit $status"
  return "$status"
}

mkdir -p "$FIGURES_DIR"
run_checks "$@" 2>&1 | tee "$FIGURES_DIR/gpu_check.txt"
status=${PIPESTATUS[0]}
if [[ -f $BUILD_DIR/build.log && $BUILD_DIR != "$FIGURES_DIR" ]]; then
  cp "$BUILD_DIR/build.log" "$FIGURES_DIR/gpu_check_build.log"
fi
exit "$status"
