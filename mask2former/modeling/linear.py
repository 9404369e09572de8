"""
Linear layers whose inference on the CPU runs on oneDNN, in float32 and under bfloat16 autocast.

PyTorch computes a float32 ``F.linear`` on the CPU with its BLAS (MKL in the official wheels).
On CPUs where MKL does not use AVX-512 (measured on an AMD EPYC, Zen 5) that reaches less than
half the speed of oneDNN's kernel on the same matrices: 12 ms instead of 28 ms for the
(5376 x 256) @ (256 x 1024) product of the pixel decoder's feed-forward block, one thread.
Under bfloat16 autocast, ``F.linear`` runs on oneDNN already, but copies the bias into the
output first and applies a following ReLU in another pass; one fused call takes 7 ms instead
of 12 ms for the product above with its ReLU.

:func:`linear` (and :class:`Linear`, an ``nn.Linear``) call oneDNN's linear
(``torch.ops.mkldnn._linear_pointwise``, the kernel that ``torch.compile`` uses for frozen CPU
models), with the following ReLU or GELU fused, when nothing else is needed from the call: CPU
tensors, no gradient, and float32 without autocast or bfloat16 autocast (inputs, weight and
bias cast to bfloat16, as autocast casts them for ``F.linear``). Every other call (training,
other types, GPU, a PyTorch built without oneDNN, tracing for export, torch.compile) is
``F.linear``. The results equal ``F.linear``'s up to rounding (another summation order).
"""
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Linear", "linear"]

_ONEDNN_LINEAR = (
    getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available() else None
)
# activation name -> (oneDNN post-op, its scalars, its algorithm; the same in PyTorch)
_ACTIVATIONS = {
    None: (("none", [], ""), None),
    "relu": (("relu", [None], ""), lambda y: F.relu(y, inplace=True)),
    "gelu": (("gelu", [], "none"), F.gelu),  # the exact (erf) GELU of nn.GELU()
}


def _onednn_dtype(x, weight):
    """The type oneDNN computes ``x @ weight.T`` in for this call, or None to use F.linear."""
    if _ONEDNN_LINEAR is None or x.device.type != "cpu" or torch.is_grad_enabled():
        return None
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return None  # exported and compiled graphs get the standard op
    if torch.is_autocast_enabled("cpu"):
        return torch.bfloat16 if torch.get_autocast_dtype("cpu") == torch.bfloat16 else None
    return torch.float32 if x.dtype == weight.dtype == torch.float32 else None


def linear(x, weight, bias=None, activation=None):
    """
    ``F.linear`` (then ``activation``), on oneDNN where the module docstring says.

    Args:
        x: (..., in_features).
        weight: (out_features, in_features); bias: (out_features,) or None.
        activation: None, "relu" or "gelu" (exact): applied to the result.

    Returns:
        (..., out_features)
    """
    (post_op, scalars, algorithm), function = _ACTIVATIONS[activation]
    dtype = _onednn_dtype(x, weight)
    if dtype is not None:
        bias = None if bias is None else bias.to(dtype)
        return _ONEDNN_LINEAR(x.to(dtype), weight.to(dtype), bias, post_op, scalars, algorithm)
    y = F.linear(x, weight, bias)
    return y if function is None else function(y)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same results) with a faster inference on the CPU."""

    def forward(self, x, activation=None):
        """(..., in_features) -> (..., out_features); see :func:`linear`."""
        return linear(x, self.weight, self.bias, activation)
