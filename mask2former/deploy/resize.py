"""
Resizing in numpy with the exact arithmetic of the libraries the PyTorch pipeline uses, so that
an exported model sees the same inputs and gives its results at the same sizes:

- :func:`resize_image` resizes uint8 images like Detectron2's ``ResizeTransform`` (Pillow's
  bilinear filter with its 22-bit fixed-point weights; identical bytes);
- :func:`resize_maps` resizes float maps like ``torch.nn.functional.interpolate(mode="bilinear",
  align_corners=False)``, which ``sem_seg_postprocess`` uses to bring results to the output size;
  :func:`resize_map_rows` gives a band of its rows (the same values) from the source rows it
  needs, so that large outputs are made a band at a time;
- :func:`nearest_index` is the nearest-neighbour rule that resizes results (label maps, masks).
"""
import math

import numpy as np

__all__ = [
    "shortest_edge_size",
    "resize_image",
    "resize_maps",
    "resize_map_rows",
    "bilinear_taps",
    "nearest_index",
]

# Pillow's fixed-point precision of the 8-bit resampling weights (Resample.c).
_PRECISION_BITS = 32 - 8 - 2


def shortest_edge_size(height, width, short_edge_length, max_size):
    """
    (new_height, new_width) of Detectron2's ``ResizeShortestEdge.get_output_shape``: the
    shorter side becomes ``short_edge_length`` unless the longer one would exceed ``max_size``.
    ``short_edge_length`` 0 keeps the size (Detectron2 then does not resize).
    """
    if short_edge_length == 0:
        return height, width
    size = float(short_edge_length)
    scale = size / min(height, width)
    new_h, new_w = (size, scale * width) if height < width else (scale * height, size)
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def _pil_bilinear_taps(in_size, out_size):
    """
    Pillow's bilinear resampling taps along one axis: for each output index the first input
    index, and the fixed-point weights of the following inputs.

    Returns:
        (first (out,), weights (out, taps) int64): output[i] = sum_t input[first[i] + t] *
        weights[i, t], then rounded down by _PRECISION_BITS.
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 1.0 * filter_scale
    taps = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    first = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    last = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    offsets = np.arange(taps)
    inside = offsets[None, :] < (last - first)[:, None]
    distance = (first[:, None] + offsets[None, :] - center[:, None] + 0.5) / filter_scale
    weights = np.where(inside, np.maximum(1.0 - np.abs(distance), 0.0), 0.0)
    total = weights.sum(1, keepdims=True)
    weights = np.divide(weights, total, out=weights, where=total != 0)
    fixed = np.where(weights < 0, -0.5 + weights * (1 << _PRECISION_BITS),
                     0.5 + weights * (1 << _PRECISION_BITS))
    return first, np.trunc(fixed).astype(np.int64)


def _pil_resample_axis(image, out_size, axis):
    """One of Pillow's two passes: resample uint8 ``image`` along ``axis`` to ``out_size``."""
    in_size = image.shape[axis]
    first, weights = _pil_bilinear_taps(in_size, out_size)
    index = np.minimum(first[:, None] + np.arange(weights.shape[1])[None, :], in_size - 1)
    gathered = np.take(image.astype(np.int64), index, axis=axis)  # axis -> (out, taps)
    weights = weights.reshape(weights.shape + (1,) * (image.ndim - axis - 1))
    total = (gathered * weights).sum(axis + 1) + (1 << (_PRECISION_BITS - 1))
    return np.clip(total >> _PRECISION_BITS, 0, 255).astype(np.uint8)


def resize_image(image, new_height, new_width):
    """
    Resize a uint8 image as Detectron2's ``ResizeTransform`` does (``PIL.Image.resize`` with the
    bilinear filter): the same bytes.

    Args:
        image: (H, W) or (H, W, C) uint8.

    Returns:
        (new_height, new_width[, C]) uint8.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"resize_image takes uint8 images, got {image.dtype}")
    # Pillow resamples the width first, then the height of the result.
    if image.shape[1] != new_width:
        image = _pil_resample_axis(image, new_width, axis=1)
    if image.shape[0] != new_height:
        image = _pil_resample_axis(image, new_height, axis=0)
    return image


def bilinear_taps(in_size, out_size):
    """
    Source indices and weights of a bilinear resize along one axis, with PyTorch's rule
    (``F.interpolate(mode="bilinear", align_corners=False)``: float32 source positions, clamped
    at the first index, the last index repeated at the far edge).

    The one definition of the bilinear resize's source positions: ``resize_maps`` reads it, and
    so does the PyTorch post-processing when it resizes a band of rows
    (mask2former/modeling/postprocessing.py).

    Returns:
        (low (out,) int64, high (out,) int64, w_low (out,) float32, w_high (out,) float32):
        output[i] = input[low[i]] * w_low[i] + input[high[i]] * w_high[i].
    """
    scale = np.float32(in_size) / np.float32(out_size)
    source = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    source = np.maximum(source, np.float32(0))
    low = source.astype(np.int64)
    w_high = np.minimum(source - low.astype(np.float32), np.float32(1))
    high = low + (low < in_size - 1)
    return low, high, np.float32(1) - w_high, w_high


def nearest_index(in_size, out_size):
    """
    Source index of each output index of a centered nearest-neighbour resize along one axis:
    (out_size,) int64, ``floor((i + 0.5) * in_size / out_size)``. The one definition of the
    nearest resize of results (panoptic ids, instance masks, label maps) of both
    post-processings.
    """
    out = np.arange(out_size, dtype=np.float64)
    return np.minimum(np.floor((out + 0.5) * (in_size / out_size)).astype(np.int64), in_size - 1)


def resize_map_rows(maps, height, width, start, stop):
    """
    Output rows [start, stop) of :func:`resize_maps`, the same values to the bit, reading only
    the source rows they need (columns resized first, then rows, as ``resize_maps`` does).

    Args:
        maps: (C, H, W) float32.

    Returns:
        (C, stop - start, width) float32.
    """
    if maps.shape[-2] == height:
        return _resize_columns(maps[:, start:stop], width)
    low, high, w_low, w_high = (x[start:stop] for x in bilinear_taps(maps.shape[-2], height))
    first, last = int(low[0]), int(high[-1]) + 1
    columns = _resize_columns(maps[:, first:last], width)
    low, high = low - first, high - first
    return columns[:, low, :] * w_low[:, None] + columns[:, high, :] * w_high[:, None]


def _resize_columns(maps, width):
    """(C, R, W) -> (C, R, width): the bilinear resize along the last axis."""
    if maps.shape[-1] == width:
        return maps
    low, high, w_low, w_high = bilinear_taps(maps.shape[-1], width)
    return maps[:, :, low] * w_low + maps[:, :, high] * w_high


def resize_maps(maps, height, width):
    """
    Resize float maps as ``F.interpolate(maps[None], (height, width), mode="bilinear",
    align_corners=False)[0]`` does (the same weights and order of operations).

    Args:
        maps: (C, H, W) float32.

    Returns:
        (C, height, width) float32; ``maps`` itself when the size is unchanged.
    """
    if maps.shape[-2:] == (height, width):
        return maps
    return resize_map_rows(maps, height, width, 0, height)
