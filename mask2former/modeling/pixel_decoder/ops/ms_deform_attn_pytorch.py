"""Multi-scale deformable attention in plain PyTorch (the reference path of the op)."""
import torch
import torch.nn.functional as F

from .spatial_shapes import level_shapes_list


def ms_deform_attn_pytorch(value, spatial_shapes, level_start_index, sampling_locations,
                           attention_weights):
    """
    Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021, eq. 3) with bilinear
    sampling, zero padding and ``align_corners=False`` semantics.

    Args:
        value: (B, Len_in, nHeads, C) values of all levels, flattened and concatenated.
        spatial_shapes: (L, 2) int64 tensor or list of L (H_l, W_l) int pairs, the size of each
            level; sum(H_l * W_l) == Len_in. A list keeps the sizes symbolic when traced.
        level_start_index: (L,) int64, offset of each level in Len_in (unused here; kept so
            both implementations share one signature).
        sampling_locations: (B, Len_q, nHeads, L, P, 2) locations (x, y) normalized to
            [0, 1] per level; points outside read zeros.
        attention_weights: (B, Len_q, nHeads, L, P) weights of the sampled values.

    Returns:
        (B, Len_q, nHeads * C) the weighted sums of sampled values.
    """
    batch, _, num_heads, channels = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    level_shapes = level_shapes_list(spatial_shapes)
    value_per_level = value.split([height * width for height, width in level_shapes], dim=1)
    # grid_sample takes locations in [-1, 1].
    sampling_grids = 2 * sampling_locations - 1
    sampled_per_level = []
    for level, (height, width) in enumerate(level_shapes):
        # (B, H*W, nHeads, C) -> (B*nHeads, C, H, W)
        value_l = (
            value_per_level[level].flatten(2).transpose(1, 2)
            .reshape(batch * num_heads, channels, height, width)
        )
        # (B, Len_q, nHeads, P, 2) -> (B*nHeads, Len_q, P, 2)
        grid_l = sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        # (B*nHeads, C, Len_q, P)
        sampled_per_level.append(
            F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros",
                          align_corners=False)
        )
    # (B, Len_q, nHeads, L, P) -> (B*nHeads, 1, Len_q, L*P)
    weights = attention_weights.transpose(1, 2).reshape(
        batch * num_heads, 1, num_queries, num_levels * num_points
    )
    # (B*nHeads, C, Len_q, L*P) weighted and summed over levels and points.
    output = (torch.stack(sampled_per_level, dim=-2).flatten(-2) * weights).sum(-1)
    return output.view(batch, num_heads * channels, num_queries).transpose(1, 2).contiguous()
