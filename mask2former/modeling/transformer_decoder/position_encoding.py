"""Sine position embedding of a feature map (DETR, Carion et al. 2020)."""
import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """
    Fixed 2-D sine/cosine position embedding: the first ``num_pos_feats`` channels encode the
    row, the last ``num_pos_feats`` the column. Every position of the map is embedded (inputs
    are not masked: padding is treated as image, as the published models do).
    """

    def __init__(self, num_pos_feats=64, temperature=10000, normalize=True, scale=2 * math.pi):
        """
        Args:
            num_pos_feats: channels per axis; the embedding has 2 * num_pos_feats channels.
            temperature: base of the geometric sequence of wavelengths.
            normalize: map the positions 1..H (1..W) to (0, scale] before embedding.
            scale: upper end of the normalized positions.
        """
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale

    def forward(self, x):
        """
        Args:
            x: (B, C, H, W) feature map; only its shape, dtype and device are used.

        Returns:
            (B, 2 * num_pos_feats, H, W) position embedding in the dtype of ``x``.
        """
        batch, _, height, width = x.shape
        y_embed = torch.arange(1, height + 1, dtype=torch.float32, device=x.device)
        x_embed = torch.arange(1, width + 1, dtype=torch.float32, device=x.device)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (height + eps) * self.scale
            x_embed = x_embed / (width + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (
            2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats
        )
        # (H, F) and (W, F), sine on even channels and cosine on odd ones.
        pos_y = y_embed[:, None] / dim_t
        pos_x = x_embed[:, None] / dim_t
        pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
        pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
        pos = torch.cat(
            (
                pos_y[:, None, :].expand(height, width, self.num_pos_feats),
                pos_x[None, :, :].expand(height, width, self.num_pos_feats),
            ),
            dim=2,
        )
        return pos.permute(2, 0, 1).unsqueeze(0).expand(batch, -1, -1, -1).to(x.dtype)
