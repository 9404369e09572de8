"""
The native multi-scale deformable attention op (C++ on CPU, CUDA on GPU), built from ``csrc/``
into ``_C`` at install time, and its registrations for autograd and ``torch.compile``.

The C++ library defines ``torch.ops.mask2former.ms_deform_attn_forward`` and
``torch.ops.mask2former.ms_deform_attn_backward``; this module adds their fake (meta) kernels and
the autograd formula. ``NATIVE_OP_ERROR`` is None when the op loaded, else the reason it did not.
"""
import importlib
import importlib.util

import torch


def _load_native_op():
    """Returns (the _C module or None, None or why it did not load)."""
    name = f"{__package__}._C"
    if importlib.util.find_spec(name) is None:
        return None, ("not built; install with `pip install --no-build-isolation -e .` "
                      "(needs a C++ compiler and torch at build time)")
    try:
        return importlib.import_module(name), None
    except (ImportError, OSError) as error:  # e.g. built against another torch
        return None, f"{type(error).__name__}: {error}"


_C, NATIVE_OP_ERROR = _load_native_op()
# Device types with a native kernel.
_NATIVE_DEVICE_TYPES = () if _C is None else ("cpu", "cuda") if _C.has_cuda() else ("cpu",)


def native_op_available(device_type):
    """Whether the native op has a kernel for tensors on ``device_type`` ("cpu", "cuda", ...)."""
    return device_type in _NATIVE_DEVICE_TYPES


def ms_deform_attn_native(value, spatial_shapes, level_start_index, sampling_locations,
                          attention_weights):
    """
    The native op; same arguments and result as ``ms_deform_attn_pytorch``.

    Args:
        value: (B, Len_in, nHeads, C)
        spatial_shapes: (L, 2) int64, (H_l, W_l) of each level.
        level_start_index: (L,) int64, offset of each level in Len_in.
        sampling_locations: (B, Len_q, nHeads, L, P, 2), (x, y) normalized to [0, 1] per level.
        attention_weights: (B, Len_q, nHeads, L, P)

    Returns:
        (B, Len_q, nHeads * C)
    """
    return torch.ops.mask2former.ms_deform_attn_forward(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )


def _forward_fake(value, spatial_shapes, level_start_index, sampling_locations,
                  attention_weights):
    batch, num_queries, num_heads = sampling_locations.shape[:3]
    return value.new_empty((batch, num_queries, num_heads * value.shape[3]))


def _backward_fake(grad_output, value, spatial_shapes, level_start_index, sampling_locations,
                   attention_weights):
    return (torch.empty_like(value), torch.empty_like(sampling_locations),
            torch.empty_like(attention_weights))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = (
        ctx.saved_tensors
    )
    grad_value, grad_locations, grad_weights = torch.ops.mask2former.ms_deform_attn_backward(
        grad_output, value, spatial_shapes, level_start_index, sampling_locations,
        attention_weights,
    )
    return grad_value, None, None, grad_locations, grad_weights


if _C is not None:
    torch.library.register_fake("mask2former::ms_deform_attn_forward")(_forward_fake)
    torch.library.register_fake("mask2former::ms_deform_attn_backward")(_backward_fake)
    torch.library.register_autograd(
        "mask2former::ms_deform_attn_forward", _backward, setup_context=_setup_context
    )
