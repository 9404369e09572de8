"""
The multi-scale deformable attention op: one function, two implementations.

``ms_deform_attn`` runs the native op (``ms_deform_attn_native``: C++ on CPU, CUDA on GPU) when it
was built and has a kernel for the tensors' device, else the pure PyTorch implementation
(``ms_deform_attn_pytorch``); both take the same arguments and give equal results. The first call
on each device type logs which one runs.

While the model is exported (``torch.onnx.export``, ``torch.jit.trace``) the PyTorch
implementation always runs: the exported graph is then made of standard operators (``grid_sample``:
ONNX GridSample, opset >= 16), which ONNX Runtime and TorchScript run without this package's
native library.

Set the environment variable ``MASK2FORMER_MS_DEFORM_ATTN=pytorch`` (before the first call) to
always run the PyTorch implementation, e.g. to compare the two; ``native`` makes a missing native
op an error; ``auto`` (the default) picks as above.
"""
import logging
import os

import torch

from .ms_deform_attn_native import NATIVE_OP_ERROR, ms_deform_attn_native, native_op_available
from .ms_deform_attn_pytorch import ms_deform_attn_pytorch
from .spatial_shapes import level_shapes_list, spatial_shapes_tensor

__all__ = ["ms_deform_attn", "ms_deform_attn_native", "ms_deform_attn_pytorch",
           "native_op_available", "level_shapes_list", "spatial_shapes_tensor"]

logger = logging.getLogger(__name__)

_BACKEND_ENV = "MASK2FORMER_MS_DEFORM_ATTN"
_BACKEND = os.environ.get(_BACKEND_ENV, "auto")
if _BACKEND not in ("auto", "native", "pytorch"):
    raise ValueError(f"{_BACKEND_ENV}={_BACKEND!r}: use 'auto', 'native' or 'pytorch'.")
_logged_device_types = set()  # (device type, exporting) pairs


def _exporting():
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _use_native(device_type):
    if _BACKEND == "pytorch" or _exporting():
        return False
    available = native_op_available(device_type)
    if _BACKEND == "native" and not available:
        raise RuntimeError(
            f"{_BACKEND_ENV}=native but the native MSDeformAttn op has no {device_type} kernel "
            f"({NATIVE_OP_ERROR or 'built without it'}); rebuild with "
            "`pip install --no-build-isolation -e .` or unset the variable."
        )
    return available


def _log_choice_once(device_type, native):
    key = (device_type, _exporting())
    if key in _logged_device_types:
        return
    _logged_device_types.add(key)
    if native:
        logger.info("MSDeformAttn on %s: native op.", device_type)
    elif _exporting():
        logger.info("MSDeformAttn on %s: PyTorch implementation (exporting: standard "
                    "operators only).", device_type)
    elif _BACKEND == "pytorch":
        logger.info("MSDeformAttn on %s: PyTorch implementation (%s=pytorch).", device_type,
                    _BACKEND_ENV)
    else:
        logger.warning("MSDeformAttn on %s: PyTorch implementation; the native op is not "
                       "available (%s).", device_type, NATIVE_OP_ERROR or "built without it")


def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                   attention_weights):
    """
    Multi-scale deformable attention; see ``ms_deform_attn_pytorch`` for the semantics.

    Args:
        value: (B, Len_in, nHeads, C) values of all levels, flattened and concatenated.
        spatial_shapes: (L, 2) int64 tensor or list of L (H_l, W_l) int pairs, the size of each
            level (see ``spatial_shapes.py``).
        level_start_index: (L,) int64, offset of each level in Len_in.
        sampling_locations: (B, Len_q, nHeads, L, P, 2), (x, y) normalized to [0, 1] per level.
        attention_weights: (B, Len_q, nHeads, L, P)

    Returns:
        (B, Len_q, nHeads * C)
    """
    device_type = value.device.type
    native = _use_native(device_type)
    if not torch.compiler.is_compiling():
        _log_choice_once(device_type, native)
    if native:
        return ms_deform_attn_native(
            value, spatial_shapes_tensor(spatial_shapes, value.device), level_start_index,
            sampling_locations, attention_weights,
        )
    return ms_deform_attn_pytorch(value, spatial_shapes, level_start_index, sampling_locations,
                                  attention_weights)
