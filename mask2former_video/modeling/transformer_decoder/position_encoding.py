"""Sine position embedding of a clip of feature maps: space (y, x) and time."""
import torch

from mask2former.modeling.transformer_decoder.position_encoding import PositionEmbeddingSine


class PositionEmbeddingSine3D(PositionEmbeddingSine):
    """
    The image embedding of each pixel (:class:`PositionEmbeddingSine`: ``num_pos_feats`` row
    channels, then ``num_pos_feats`` column channels) plus an embedding of its frame over all
    ``2 * num_pos_feats`` channels: frame t = 1..T, normalized to ``t / T * scale`` when
    ``normalize``, divided by ``temperature ** (2 * (i // 2) / (2 * num_pos_feats))`` for
    channel i, sine on even channels and cosine on odd ones.
    """

    def forward(self, x):
        """
        Args:
            x: (B, T, C, H, W) clip of feature maps; only its shape, dtype and device are used.

        Returns:
            (B, T, 2 * num_pos_feats, H, W) position embedding in the dtype of ``x``.
        """
        batch, frames, channels, height, width = x.shape
        spatial = super().forward(x[:1, 0]).float()  # (1, 2F, H, W)
        time = torch.arange(1, frames + 1, dtype=torch.float32, device=x.device)
        if self.normalize:
            time = time / (frames + 1e-6) * self.scale
        dims = 2 * self.num_pos_feats
        dim_t = torch.arange(dims, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / dims)
        pos_t = time[:, None] / dim_t  # (T, 2F)
        pos_t = torch.stack((pos_t[:, 0::2].sin(), pos_t[:, 1::2].cos()), dim=2).flatten(1)
        pos = spatial[:, None] + pos_t[None, :, :, None, None]  # (1, T, 2F, H, W)
        return pos.expand(batch, -1, -1, -1, -1).to(x.dtype)
