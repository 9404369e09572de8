"""
Swin Transformer backbone (Liu et al., "Swin Transformer: Hierarchical Vision Transformer using
Shifted Windows", ICCV 2021) as a Detectron2 backbone.

The image is split into 4x4 patches; four stages of Swin blocks follow, each block doing
self-attention inside non-overlapping windows of ``window_size x window_size`` tokens, every
second block with the windows shifted by half a window so that information crosses window
borders. Between stages a patch-merging layer halves the resolution and doubles the channels.
The stage outputs, each through its own LayerNorm, are the features res2..res5 (strides 4..32).

Parameter names follow the official Swin release (``patch_embed``, ``layers.{i}.blocks.{j}``,
``layers.{i}.downsample``, ``norm{i}``), so its converted checkpoints and the published
Mask2Former checkpoints load unchanged.
"""

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from ..linear import Linear

__all__ = ["D2SwinTransformer"]


class DropPath(nn.Module):
    """Stochastic depth: zeroes the whole residual branch of a random subset of samples."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        """x: (B, ...). Each sample is kept with probability 1 - drop_prob and rescaled."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self):
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """Feed-forward block of a Swin block: Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden_dim: int, drop: float):
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim)
        self.fc2 = Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        """x: (..., C) -> (..., C)."""
        return self.drop(self.fc2(self.drop(self.fc1(x, activation="gelu"))))


def relative_position_index(window_size: int) -> torch.Tensor:
    """
    Index into the relative position bias table for every (query, key) pair of a window.

    Returns a (N, N) long tensor, N = window_size ** 2, tokens in row-major order. The pair at
    offset (dh, dw) = (query - key) maps to row (dh + ws - 1) * (2 * ws - 1) + (dw + ws - 1)
    of the (2 * ws - 1) ** 2 row table.
    """
    coords = torch.arange(window_size)
    grid = torch.stack(torch.meshgrid(coords, coords, indexing="ij")).flatten(1)  # (2, N)
    offsets = grid[:, :, None] - grid[:, None, :] + (window_size - 1)  # (2, N, N), in [0, 2ws-2]
    return offsets[0] * (2 * window_size - 1) + offsets[1]


class WindowAttention(nn.Module):
    """
    Multi-head self-attention inside a window, with a learned bias per relative position and
    head (Swin, Eq. 4): softmax(Q K^T / sqrt(d) + B) V.
    """

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None,
                 attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x, mask=None):
        """
        Args:
            x: (B * nW, N, C) tokens of B images, nW windows each, N tokens per window.
            mask: (nW, N, N) additive mask (0 or -100) of the shifted windows, or None.
        Returns:
            (B * nW, N, C)
        """
        BW, N, C = x.shape
        qkv = self.qkv(x).reshape(BW, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B * nW, heads, N, d)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(N, N, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(BW // nW, nW, self.num_heads, N, N) + mask.to(attn.dtype)[:, None]
            attn = attn.view(BW, self.num_heads, N, N)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(BW, N, C)
        return self.proj_drop(self.proj(x))


def window_partition(x, window_size):
    """(B, H, W, C) with H, W multiples of window_size -> (B * nW, window_size ** 2, C)."""
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, C)


def window_reverse(windows, window_size, H, W):
    """Inverse of :func:`window_partition`: (B * nW, window_size ** 2, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window_size, W // window_size, window_size, window_size, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


class SwinTransformerBlock(nn.Module):
    """
    One Swin block: (shifted) window attention and an MLP, each pre-normalized and residual.

    The feature map is padded (zeros, after norm1) to a multiple of the window size. With
    ``shift_size > 0`` it is rolled by ``-shift_size`` before attention and back afterwards;
    the mask passed to forward keeps tokens from attending across the roll's seams.
    """

    def __init__(self, dim, num_heads, window_size=7, shift_size=0, mlp_ratio=4.0,
                 qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size={shift_size} must be in [0, window_size={window_size})")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, proj_drop=drop
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x, H, W, attn_mask):
        """
        Args:
            x: (B, H * W, C) tokens in row-major order.
            attn_mask: (nW, N, N) mask of the padded, shifted feature map (used when shifted).
        Returns:
            (B, H * W, C)
        """
        B, L, C = x.shape
        ws = self.window_size
        shortcut = x
        x = self.norm1(x).view(B, H, W, C)
        pad_b, pad_r = (-H) % ws, (-W) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        Hp, Wp = H + pad_b, W + pad_r
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = self.attn(window_partition(x, ws), attn_mask if self.shift_size > 0 else None)
        x = window_reverse(windows, ws, Hp, Wp)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = x[:, :H, :W, :].reshape(B, L, C)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


def shifted_window_mask(Hp, Wp, window_size, shift_size, device):
    """
    Additive attention mask for windows of a feature map rolled by ``-shift_size``.

    After the roll, a window at the bottom/right border holds tokens from up to four regions
    that are not neighbours in the image; tokens may attend only within their own region.
    Returns (nW, N, N) with 0 for allowed pairs and -100 (softmax weight ~0) otherwise.
    """

    def bands(size):
        # 0 before the last window, 1 in it before the seam, 2 after the seam.
        index = torch.arange(size, device=device)
        return (index >= size - window_size).long() + (index >= size - shift_size).long()

    # Computed, not assigned slice by slice, so that a trace keeps Hp and Wp symbolic.
    region = (bands(Hp)[:, None] * 3 + bands(Wp)[None, :]).float()[None, :, :, None]
    ids = window_partition(region, window_size).squeeze(-1)  # (nW, N)
    same = ids[:, None, :] == ids[:, :, None]
    return torch.zeros(same.shape, device=device).masked_fill(~same, -100.0)


class PatchMerging(nn.Module):
    """
    Downsampling between stages: concatenates each 2x2 neighbourhood (4C channels, in the
    order top-left, bottom-left, top-right, bottom-right), normalizes, and projects to 2C.
    """

    def __init__(self, dim):
        super().__init__()
        self.reduction = Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x, H, W):
        """(B, H * W, C) -> (B, ceil(H / 2) * ceil(W / 2), 2C); odd sizes are zero-padded."""
        B, L, C = x.shape
        x = x.view(B, H, W, C)
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1
        )
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class BasicLayer(nn.Module):
    """One stage: ``depth`` Swin blocks alternating regular and shifted windows, then an
    optional :class:`PatchMerging`."""

    def __init__(self, dim, depth, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale,
                 drop, attn_drop, drop_path, downsample, use_checkpoint):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim, num_heads, window_size, 0 if i % 2 == 0 else self.shift_size, mlp_ratio,
                qkv_bias, qk_scale, drop, attn_drop, drop_path[i],
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x, H, W):
        """
        Args:
            x: (B, H * W, C)
        Returns:
            the stage output (B, H * W, C) and the next stage's input (B, H' * W', C'),
            H' = ceil(H / 2), C' = 2C (the same tensor and sizes without downsampling),
            and H', W'.
        """
        ws = self.window_size
        Hp, Wp = H + (-H) % ws, W + (-W) % ws
        mask = shifted_window_mask(Hp, Wp, ws, self.shift_size, x.device)
        for block in self.blocks:
            if self.use_checkpoint and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, H, W, mask, use_reentrant=False)
            else:
                x = block(x, H, W, mask)
        if self.downsample is None:
            return x, x, H, W
        return x, self.downsample(x, H, W), (H + 1) // 2, (W + 1) // 2


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: a patch_size-strided conv (input zero-padded at
    the bottom/right to a multiple of patch_size), optionally followed by LayerNorm."""

    def __init__(self, patch_size, in_chans, embed_dim, norm):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x):
        """(B, 3, H, W) -> (B, C, ceil(H / patch), ceil(W / patch))."""
        p = self.patch_size
        x = self.proj(F.pad(x, (0, (-x.shape[3]) % p, 0, (-x.shape[2]) % p)))
        if self.norm is not None:
            Hp, Wp = x.shape[2:]
            x = self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).view(-1, x.shape[1], Hp, Wp)
        return x


@BACKBONE_REGISTRY.register()
class D2SwinTransformer(Backbone):
    """
    Swin Transformer returning the stage outputs named res2..res5 (strides 4, 8, 16, 32;
    channels embed_dim * 1, 2, 4, 8), each normalized by its own LayerNorm ``norm{i}``.
    """

    @configurable
    def __init__(
        self,
        *,
        pretrain_img_size=224,
        patch_size=4,
        in_chans=3,
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.3,
        ape=False,
        patch_norm=True,
        out_features=("res2", "res3", "res4", "res5"),
        use_checkpoint=False,
    ):
        """
        Args:
            pretrain_img_size: image size of pre-training; sets the size of the absolute
                position embedding (interpolated to the input at run time).
            patch_size: side of the square patches of the patch embedding.
            in_chans: input channels.
            embed_dim: channels of the first stage (doubled at every later stage).
            depths, num_heads: blocks and attention heads of each stage.
            window_size: side of the attention windows, in tokens.
            mlp_ratio: MLP hidden width relative to the channels.
            qkv_bias: learn a bias in the query/key/value projection.
            qk_scale: attention scale; None for head_dim ** -0.5.
            drop_rate, attn_drop_rate: dropout after projections / on attention weights.
            drop_path_rate: stochastic depth of the last block; rises linearly from 0.
            ape: add a learned absolute position embedding to the patch tokens.
            patch_norm: LayerNorm after the patch embedding.
            out_features: which of res2..res5 forward returns.
            use_checkpoint: recompute the blocks in backward (gradient checkpointing).
        """
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} must have equal length")
        names = [f"res{i + 2}" for i in range(len(depths))]
        unknown = [f for f in out_features if f not in names]
        if unknown:
            raise ValueError(f"Swin out_features {unknown} not among the stages {names}")
        self.num_layers = len(depths)
        self.ape = ape
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)
        if ape:
            grid = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(drop_rate)

        n = sum(depths)
        rates = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
        num_features = [int(embed_dim * 2**i) for i in range(self.num_layers)]
        self.layers = nn.ModuleList(
            BasicLayer(
                dim=num_features[i],
                depth=depths[i],
                num_heads=num_heads[i],
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rates[sum(depths[:i]) : sum(depths[: i + 1])],
                downsample=i < self.num_layers - 1,
                use_checkpoint=use_checkpoint,
            )
            for i in range(self.num_layers)
        )
        self._out_features = list(out_features)
        self._out_indices = [names.index(f) for f in self._out_features]
        for i in self._out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(num_features[i]))
        self._out_feature_channels = {names[i]: num_features[i] for i in range(self.num_layers)}
        self._out_feature_strides = {names[i]: patch_size * 2**i for i in range(self.num_layers)}
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @classmethod
    def from_config(cls, cfg, input_shape):
        s = cfg.MODEL.SWIN
        return {
            "pretrain_img_size": s.PRETRAIN_IMG_SIZE,
            "patch_size": s.PATCH_SIZE,
            "in_chans": input_shape.channels,
            "embed_dim": s.EMBED_DIM,
            "depths": s.DEPTHS,
            "num_heads": s.NUM_HEADS,
            "window_size": s.WINDOW_SIZE,
            "mlp_ratio": s.MLP_RATIO,
            "qkv_bias": s.QKV_BIAS,
            "qk_scale": s.QK_SCALE,
            "drop_rate": s.DROP_RATE,
            "attn_drop_rate": s.ATTN_DROP_RATE,
            "drop_path_rate": s.DROP_PATH_RATE,
            "ape": s.APE,
            "patch_norm": s.PATCH_NORM,
            "out_features": s.OUT_FEATURES,
            "use_checkpoint": s.USE_CHECKPOINT,
        }

    def forward(self, x):
        """
        Args:
            x: (B, C_in, H, W) images; any H, W (padded internally).
        Returns:
            dict name -> (B, C_i, ceil(H / s_i), ceil(W / s_i)) for the out_features, where
            s_i is the stride of stage i (4, 8, 16, 32) and C_i its channels.
        """
        if x.dim() != 4:
            raise ValueError(
                f"D2SwinTransformer takes (B, C, H, W) images, got shape {tuple(x.shape)}"
            )
        x = self.patch_embed(x)
        H, W = x.shape[2:]
        if self.ape:
            x = x + F.interpolate(self.absolute_pos_embed, size=(H, W), mode="bicubic")
        x = self.pos_drop(x.flatten(2).transpose(1, 2))  # (B, H * W, C)
        outputs = {}
        names = list(self._out_feature_channels)
        for i, layer in enumerate(self.layers):
            out, x, H_next, W_next = layer(x, H, W)
            if i in self._out_indices:
                out = getattr(self, f"norm{i}")(out)
                out = out.view(-1, H, W, out.shape[-1]).permute(0, 3, 1, 2)
                outputs[names[i]] = out.contiguous()
            H, W = H_next, W_next
        return outputs

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }

    @property
    def size_divisibility(self):
        return 32
