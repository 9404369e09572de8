"""
Benchmark the native MSDeformAttn op against the PyTorch implementation, in one run.

Shape: the pixel decoder's at a 512x512 input (batch 2; levels 64x64, 32x32, 16x16 = 1/8, 1/16,
1/32 of the image; 8 heads x 32 channels; 4 points; every pixel is a query, Len_q = 5376), or
with ``--size 1024`` at a 1024x1024 input (levels 128x128, 64x64, 32x32, Len_q = 21504).
Repetitions of the two implementations are interleaved, so both see the same machine load;
medians and native/PyTorch speedups are printed.

    python benchmarks/bench_ms_deform_attn.py [--reps 15] [--threads N] [--dtype float32] \
        [--size 512] [--device cpu]
"""
import argparse
import statistics
import time

import torch

from mask2former.modeling.pixel_decoder.ops import (
    ms_deform_attn_native,
    ms_deform_attn_pytorch,
    native_op_available,
)


def make_inputs(batch, level_sizes, num_heads, channels, num_points, dtype, device):
    """
    Random inputs laid out like the pixel decoder's: every pixel of every level is a query whose
    sampling locations lie around its own center (reference point) at offsets of a few pixels of
    each level (normal, 2 pixels standard deviation), so some fall outside [0, 1] at the borders.
    """
    spatial_shapes = torch.tensor(level_sizes, dtype=torch.int64, device=device)
    level_start_index = torch.cat(
        [spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]]
    )
    len_in = int(spatial_shapes.prod(1).sum())
    num_levels = len(level_sizes)
    value = torch.randn(batch, len_in, num_heads, channels, dtype=dtype, device=device)
    # (Len_in, 2) normalized (x, y) pixel centers of all levels.
    centers = []
    for height, width in level_sizes:
        y, x = torch.meshgrid((torch.arange(height) + 0.5) / height,
                              (torch.arange(width) + 0.5) / width, indexing="ij")
        centers.append(torch.stack([x.flatten(), y.flatten()], -1))
    reference = torch.cat(centers).to(device=device, dtype=dtype)
    # (L, 2) size of one pixel of each level, as (x, y).
    pixel = 1.0 / spatial_shapes.flip(-1).to(dtype)
    offsets = torch.randn(batch, len_in, num_heads, num_levels, num_points, 2, dtype=dtype,
                          device=device) * 2.0 * pixel[:, None, :]
    locations = reference[None, :, None, None, None, :] + offsets
    weights = torch.rand(batch, len_in, num_heads, num_levels * num_points, dtype=dtype,
                         device=device).softmax(-1).view(
                             batch, len_in, num_heads, num_levels, num_points)
    return value, spatial_shapes, level_start_index, locations, weights


def time_call(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


# The pixel decoder's levels (1/8, 1/16, 1/32 of the input) at two input sizes.
LEVEL_SIZES = {
    512: [(64, 64), (32, 32), (16, 16)],
    1024: [(128, 128), (64, 64), (32, 32)],
}


def describe_shape(image_size):
    """The benchmark shape at ``image_size`` in words."""
    levels = LEVEL_SIZES[image_size]
    return (f"{image_size}px input: B=2, levels {'/'.join(f'{h}x{w}' for h, w in levels)}, "
            f"8 heads x 32 ch, 4 points, Len_q={sum(h * w for h, w in levels)}")


def interleaved_medians(reps, dtype, device, image_size=512):
    """
    Times "forward" (no grad) and "forward+backward" of the native op and the PyTorch
    implementation at the pixel decoder's shape for ``image_size`` (a key of LEVEL_SIZES): one
    warm-up round, then ``reps`` timed rounds, each running the four (case, implementation)
    pairs in turn.

    Returns:
        {case: {"native": median seconds, "pytorch": median seconds}}
    """
    value, shapes, starts, locations, weights = make_inputs(
        2, LEVEL_SIZES[image_size], 8, 32, 4, dtype, device
    )
    leaves = [t.requires_grad_() for t in (value, locations, weights)]
    grad_output = torch.randn(value.shape[0], value.shape[1], 256, dtype=dtype, device=device)
    implementations = {"native": ms_deform_attn_native, "pytorch": ms_deform_attn_pytorch}

    def forward(fn):
        with torch.no_grad():
            fn(value, shapes, starts, locations, weights)

    def forward_backward(fn):
        output = fn(value, shapes, starts, locations, weights)
        torch.autograd.grad(output, leaves, grad_output)

    cases = {"forward": forward, "forward+backward": forward_backward}
    times = {(case, name): [] for case in cases for name in implementations}
    for rep in range(reps + 1):  # the first round warms up and is not counted
        for case, run in cases.items():
            for name, fn in implementations.items():
                elapsed = time_call(lambda: run(fn))
                if rep > 0:
                    times[case, name].append(elapsed)
    return {case: {name: statistics.median(times[case, name]) for name in implementations}
            for case in cases}


def format_medians(medians):
    """The table of ``interleaved_medians``' result, in ms, with PyTorch/native speedups."""
    lines = [f"{'case':<18}{'native ms':>12}{'pytorch ms':>12}{'speedup':>10}"]
    for case, median in medians.items():
        native, pytorch = median["native"] * 1e3, median["pytorch"] * 1e3
        lines.append(f"{case:<18}{native:>12.3f}{pytorch:>12.3f}{pytorch / native:>9.1f}x")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions per case")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=512, choices=sorted(LEVEL_SIZES),
                        help="input image size whose pixel-decoder shape is benchmarked")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device_type = torch.device(args.device).type
    if not native_op_available(device_type):
        raise SystemExit(f"The native op has no {device_type} kernel: build it with "
                         "`pip install --no-build-isolation -e .`.")
    medians = interleaved_medians(args.reps, getattr(torch, args.dtype), args.device, args.size)
    print(f"MSDeformAttn, {describe_shape(args.size)}, {args.dtype}, {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.reps} "
          "interleaved reps")
    print(format_medians(medians))


if __name__ == "__main__":
    main()
