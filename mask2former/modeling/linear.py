"""
``nn.Linear`` whose float32 inference on the CPU runs on oneDNN.

PyTorch computes a float32 ``F.linear`` on the CPU with its BLAS (MKL in the official wheels).
On CPUs where MKL does not use AVX-512 (measured on an AMD EPYC, Zen 5) that reaches less than
half the speed of oneDNN's kernel on the same matrices: 12 ms instead of 28 ms for the
(5376 x 256) @ (256 x 1024) product of the pixel decoder's feed-forward block, one thread.
:class:`Linear` calls oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, the kernel that
``torch.compile`` uses for frozen CPU models) when nothing else is needed from the call:
float32 CPU tensors, no gradient, no autocast; it can also apply the following ReLU or GELU in
the same pass. Every other call (training, autocast, GPU, a PyTorch built without oneDNN) is
``F.linear``. The results equal ``F.linear``'s up to float32 rounding (another summation order).
"""
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Linear"]

_ONEDNN_LINEAR = (
    getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available() else None
)
# activation name -> (oneDNN post-op, its scalars, its algorithm; the same function in PyTorch)
_ACTIVATIONS = {
    None: (("none", [], ""), None),
    "relu": (("relu", [None], ""), F.relu),
    "gelu": (("gelu", [], "none"), F.gelu),  # the exact (erf) GELU of nn.GELU()
}


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same results) with a faster float32 CPU inference."""

    def forward(self, x, activation=None):
        """
        Args:
            x: (..., in_features).
            activation: None, "relu" or "gelu" (exact): applied to the result.

        Returns:
            (..., out_features)
        """
        (post_op, scalars, algorithm), function = _ACTIVATIONS[activation]
        if (
            _ONEDNN_LINEAR is not None
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu")
        ):
            return _ONEDNN_LINEAR(x, self.weight, self.bias, post_op, scalars, algorithm)
        y = F.linear(x, self.weight, self.bias)
        return y if function is None else function(y)
