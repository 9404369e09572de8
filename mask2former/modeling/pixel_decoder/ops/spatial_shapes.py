"""
The level shapes of multi-scale deformable attention, as a list of Python ints or as a tensor.

The op's interface takes ``spatial_shapes`` either as an (L, 2) int64 tensor (the native op's
input) or as a list of L (H_l, W_l) int pairs (what the pixel decoder passes). The list keeps the
PyTorch implementation free of device-to-host copies, and it keeps the sizes symbolic when the
model is traced for export: under ``torch.jit.trace`` a size read from a tensor shape is a traced
0-dim tensor, under ``torch.export`` a ``SymInt``, while ``tensor.tolist()`` or
``torch.as_tensor`` of such sizes would freeze them at the sizes of the example input.
"""
import torch

__all__ = ["level_shapes_list", "spatial_shapes_tensor"]


def level_shapes_list(spatial_shapes):
    """(L, 2) tensor or list of (H_l, W_l) -> list of L (H_l, W_l) tuples (ints or traced sizes)."""
    if isinstance(spatial_shapes, torch.Tensor):
        return [tuple(shape) for shape in spatial_shapes.tolist()]
    return [tuple(shape) for shape in spatial_shapes]


def spatial_shapes_tensor(spatial_shapes, device):
    """
    (L, 2) tensor or list of (H_l, W_l) -> (L, 2) int64 tensor on ``device``. Traced or symbolic
    sizes are stacked from scalars so that the result follows the input size in the trace.
    """
    if isinstance(spatial_shapes, torch.Tensor):
        return spatial_shapes.to(device=device, dtype=torch.long)
    sizes = [size for shape in spatial_shapes for size in shape]
    if all(type(size) is int for size in sizes):
        # Built on the host, copied without waiting for the GPU (a blocking copy synchronizes
        # the stream, and every MSDeformAttn layer calls this).
        return torch.tensor(sizes, dtype=torch.long).view(-1, 2).to(device, non_blocking=True)
    scalars = [torch.scalar_tensor(size, dtype=torch.long, device=device) for size in sizes]
    return torch.stack(scalars).view(-1, 2)
