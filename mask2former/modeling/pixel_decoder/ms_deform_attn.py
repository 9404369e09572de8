"""The multi-scale deformable attention module of Deformable DETR (Zhu et al., ICLR 2021)."""
import math

import torch
from torch import nn
from torch.nn import functional as F

from ..linear import Linear
from .ops import ms_deform_attn, spatial_shapes_tensor


class MSDeformAttn(nn.Module):
    """
    Multi-scale deformable attention: each query attends to ``n_points`` sampled locations per
    head and per feature level, placed at learned offsets around its reference point.
    """

    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4):
        """
        Args:
            d_model: channels of queries and values (C).
            n_levels: number of feature levels (L).
            n_heads: number of attention heads; must divide ``d_model``.
            n_points: sampling points per head and level (P).
        """
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(
                f"MSDeformAttn: d_model ({d_model}) must be divisible by n_heads ({n_heads})."
            )
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points

        self.sampling_offsets = Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = Linear(d_model, d_model)
        self.output_proj = Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self):
        """
        Deformable DETR's initialization: the offsets start as fixed directions, one per head
        (evenly spaced angles, scaled so the larger coordinate is 1), with point ``p`` at
        distance ``p + 1`` along its head's direction; uniform attention weights; Xavier
        projections.
        """
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        # (nHeads, L, P, 2)
        grid = directions.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query, reference_points, input_flatten, input_spatial_shapes,
                input_level_start_index, input_padding_mask=None):
        """
        Args:
            query: (B, Len_q, C) queries (with their position embeddings added).
            reference_points: (B, Len_q, L, 2) reference point (x, y) of each query on each
                level, normalized to [0, 1] (pixel centers of an H x W map are at
                ((j + 0.5) / W, (i + 0.5) / H)).
            input_flatten: (B, Len_in, C) values of all levels, each flattened row-major and
                concatenated, Len_in = sum_l H_l * W_l.
            input_spatial_shapes: (L, 2) int64 tensor or list of L (H_l, W_l) int pairs, the
                size of each level (a list keeps the sizes symbolic when the model is traced).
            input_level_start_index: (L,) int64, offset of each level in Len_in.
            input_padding_mask: optional (B, Len_in) bool, True at padded positions, whose
                values are zeroed before sampling.

        Returns:
            (B, Len_q, C) attended features.
        """
        batch, num_queries, _ = query.shape
        _, len_in, _ = input_flatten.shape

        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(batch, len_in, self.n_heads, self.d_model // self.n_heads)

        # The sampling runs in the type of the reference points (at least float32): under
        # autocast the projections give a half type, too coarse for locations.
        dtype = reference_points.dtype
        sampling_offsets = self.sampling_offsets(query).to(dtype).view(
            batch, num_queries, self.n_heads, self.n_levels, self.n_points, 2
        )
        attention_weights = F.softmax(
            self.attention_weights(query).to(dtype).view(
                batch, num_queries, self.n_heads, self.n_levels * self.n_points
            ),
            -1,
        ).view(batch, num_queries, self.n_heads, self.n_levels, self.n_points)

        # Offsets are in pixels of each level: divide by (W_l, H_l).
        offset_normalizer = (
            spatial_shapes_tensor(input_spatial_shapes, query.device).flip(-1).to(dtype)
        )
        sampling_locations = (
            reference_points[:, :, None, :, None, :]
            + sampling_offsets / offset_normalizer[None, None, None, :, None, :]
        )
        output = ms_deform_attn(
            value.to(dtype), input_spatial_shapes, input_level_start_index, sampling_locations,
            attention_weights,
        )
        return self.output_proj(output)
