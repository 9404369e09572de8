"""The PyTorch multi-scale deformable attention op and the MSDeformAttn module."""
import math

import pytest
import torch

from mask2former.modeling.pixel_decoder import MSDeformAttn
from mask2former.modeling.pixel_decoder.ops import ms_deform_attn_pytorch


def slow_ms_deform_attn(value, spatial_shapes, sampling_locations, attention_weights):
    """
    Point-by-point reference: bilinear interpolation with zero padding outside the map and
    align_corners=False, i.e. pixel (i, j) of an H x W map has its center at
    ((j + 0.5) / W, (i + 0.5) / H).
    """
    batch, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    out = torch.zeros(batch, queries, heads, channels, dtype=torch.float64)
    starts = [0]
    for height, width in spatial_shapes.tolist():
        starts.append(starts[-1] + height * width)
    for b in range(batch):
        for q in range(queries):
            for h in range(heads):
                for lvl, (height, width) in enumerate(spatial_shapes.tolist()):
                    for p in range(points):
                        loc_x, loc_y = sampling_locations[b, q, h, lvl, p].tolist()
                        x = loc_x * width - 0.5
                        y = loc_y * height - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        sample = torch.zeros(channels, dtype=torch.float64)
                        for yy, xx, w in (
                            (y0, x0, (y0 + 1 - y) * (x0 + 1 - x)),
                            (y0, x0 + 1, (y0 + 1 - y) * (x - x0)),
                            (y0 + 1, x0, (y - y0) * (x0 + 1 - x)),
                            (y0 + 1, x0 + 1, (y - y0) * (x - x0)),
                        ):
                            if 0 <= yy < height and 0 <= xx < width:
                                index = starts[lvl] + yy * width + xx
                                sample += w * value[b, index, h].double()
                        out[b, q, h] += attention_weights[b, q, h, lvl, p].double() * sample
    return out.flatten(2)


def _random_inputs(shapes, batch, queries, heads, channels, points, seed):
    generator = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    level_start_index = torch.cat(
        (spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1])
    )
    length = int(spatial_shapes.prod(1).sum())
    value = torch.randn(batch, length, heads, channels, generator=generator)
    # Locations in [-0.3, 1.3]: a good share of points fall partly or wholly outside the map.
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=generator)
    locations = locations * 1.6 - 0.3
    weights = torch.rand(batch, queries, heads, len(shapes), points, generator=generator)
    weights = weights / weights.flatten(-2).sum(-1)[..., None, None]
    return value, spatial_shapes, level_start_index, locations, weights


@pytest.mark.parametrize(
    "shapes,batch",
    [
        ([(5, 7), (3, 3), (1, 2)], 2),
        ([(4, 4)], 1),
        ([(2, 5), (1, 1)], 1),
    ],
)
def test_ms_deform_attn_pytorch_matches_slow_reference(shapes, batch):
    value, spatial_shapes, level_start_index, locations, weights = _random_inputs(
        shapes, batch, queries=5, heads=2, channels=3, points=3, seed=len(shapes) + batch
    )
    # Exact pixel centers, a border, and points far outside the map (they read zeros).
    locations[0, 0, 0, :, 0] = torch.tensor([0.5 / shapes[0][1], 0.5 / shapes[0][0]])
    locations[0, 0, 0, :, 1] = torch.tensor([1.0, 0.0])
    locations[0, 1, :, :, :] = torch.tensor([-0.8, 1.9])

    out = ms_deform_attn_pytorch(value, spatial_shapes, level_start_index, locations, weights)
    expected = slow_ms_deform_attn(value, spatial_shapes, locations, weights)

    assert out.shape == (batch, 5, 2 * 3)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    assert torch.all(out[0, 1] == 0)


def test_ms_deform_attn_pytorch_gradients_match_slow_reference():
    value, spatial_shapes, level_start_index, locations, weights = _random_inputs(
        [(3, 4), (2, 2)], batch=1, queries=2, heads=1, channels=2, points=2, seed=0
    )
    value.requires_grad_(True)
    weights.requires_grad_(True)
    out = ms_deform_attn_pytorch(value, spatial_shapes, level_start_index, locations, weights)
    out.sum().backward()
    value_grad, weights_grad = value.grad.clone(), weights.grad.clone()
    value.grad = weights.grad = None
    slow_ms_deform_attn(value, spatial_shapes, locations, weights).sum().backward()
    torch.testing.assert_close(value_grad.double(), value.grad.double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(weights_grad.double(), weights.grad.double(), atol=1e-5, rtol=0)


def test_msdeformattn_init_offsets_point_along_head_directions():
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    bias = attn.sampling_offsets.bias.view(4, 2, 3, 2)
    # Head h looks along angle 2*pi*h/4, scaled so the larger coordinate is 1; point p at p + 1.
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    for p in range(3):
        torch.testing.assert_close(bias[:, 0, p], directions * (p + 1), atol=1e-6, rtol=0)
        torch.testing.assert_close(bias[:, 1, p], directions * (p + 1), atol=1e-6, rtol=0)
    assert torch.all(attn.sampling_offsets.weight == 0)
    assert torch.all(attn.attention_weights.weight == 0)
    assert torch.all(attn.attention_weights.bias == 0)
    assert torch.all(attn.value_proj.bias == 0) and torch.all(attn.output_proj.bias == 0)


def _identity_attention(channels, offset_xy):
    """One head, one level, one point at a fixed pixel offset; identity projections."""
    attn = MSDeformAttn(d_model=channels, n_levels=1, n_heads=1, n_points=1)
    with torch.no_grad():
        attn.sampling_offsets.weight.zero_()
        attn.sampling_offsets.bias.copy_(torch.tensor(offset_xy, dtype=torch.float32))
        attn.value_proj.weight.copy_(torch.eye(channels))
        attn.output_proj.weight.copy_(torch.eye(channels))
    return attn


def _pixel_center_reference_points(height, width):
    ys, xs = torch.meshgrid(
        (torch.arange(height) + 0.5) / height, (torch.arange(width) + 0.5) / width, indexing="ij"
    )
    return torch.stack((xs.flatten(), ys.flatten()), -1)[None, :, None, :]


def test_msdeformattn_offsets_are_in_pixels_of_the_level():
    height, width, channels = 3, 5, 4
    feature = torch.randn(1, channels, height, width)
    flat = feature.flatten(2).transpose(1, 2)
    shapes = torch.tensor([[height, width]])
    start = torch.tensor([0])
    reference = _pixel_center_reference_points(height, width)

    # Offset (0, 0): each pixel reads itself.
    out = _identity_attention(channels, [0.0, 0.0])(flat, reference, flat, shapes, start)
    torch.testing.assert_close(out, flat, atol=1e-5, rtol=0)

    # Offset (+1, 0) pixel: each pixel reads its right neighbour, zero past the right edge.
    out = _identity_attention(channels, [1.0, 0.0])(flat, reference, flat, shapes, start)
    shifted = torch.zeros_like(feature)
    shifted[..., :-1] = feature[..., 1:]
    torch.testing.assert_close(out, shifted.flatten(2).transpose(1, 2), atol=1e-5, rtol=0)

    # Offset (0, +1) pixel: each pixel reads the pixel below it.
    out = _identity_attention(channels, [0.0, 1.0])(flat, reference, flat, shapes, start)
    shifted = torch.zeros_like(feature)
    shifted[..., :-1, :] = feature[..., 1:, :]
    torch.testing.assert_close(out, shifted.flatten(2).transpose(1, 2), atol=1e-5, rtol=0)


def test_msdeformattn_padding_mask_zeroes_padded_values():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2)
    shapes = torch.tensor([[4, 4], [2, 2]])
    start = torch.tensor([0, 16])
    value = torch.randn(2, 20, 16)
    query = torch.randn(2, 20, 16)
    reference = torch.rand(2, 20, 2, 2)
    padding = torch.zeros(2, 20, dtype=torch.bool)
    padding[:, 3::4] = True  # last column of the 4x4 level ...
    padding[:, 17] = True  # ... and one pixel of the 2x2 level

    out = attn(query, reference, value, shapes, start, padding)
    changed = value.clone()
    changed[padding] = 100.0
    torch.testing.assert_close(attn(query, reference, changed, shapes, start, padding), out)
    # Without the mask the same change does reach the output.
    unmasked = attn(query, reference, value, shapes, start)
    assert not torch.allclose(attn(query, reference, changed, shapes, start), unmasked)
