"""
Mask2Former's pixel decoder (paper Sec. 4): a multi-scale deformable attention (MSDeformAttn)
transformer encoder over the coarsest backbone features (1/32, 1/16, 1/8), followed by an FPN
step that adds the finer features (1/4) and produces the per-pixel mask features.
"""
import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d, get_norm
from torch import nn
from torch.nn import functional as F

from ..linear import Linear
from ..transformer_decoder.position_encoding import PositionEmbeddingSine
from .build import PIXEL_DECODER_REGISTRY
from .ms_deform_attn import MSDeformAttn
from .ops import level_shapes_list, spatial_shapes_tensor


class MSDeformAttnEncoderLayer(nn.Module):
    """Deformable self-attention over all levels, then a feed-forward block (post-norm)."""

    def __init__(self, d_model=256, d_ffn=1024, dropout=0.0, n_levels=3, n_heads=8, n_points=4):
        """
        Args:
            d_model: feature channels (C).
            d_ffn: hidden channels of the feed-forward block.
            dropout: dropout of the residual branches and after the activation.
            n_levels, n_heads, n_points: of the MSDeformAttn.
        """
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index):
        """
        Args:
            src: (B, Len, C) features of all levels, flattened and concatenated.
            pos: (B, Len, C) position (+ level) embeddings.
            reference_points: (B, Len, L, 2) normalized (x, y) reference points.
            spatial_shapes: list of L (H_l, W_l) int pairs (or an (L, 2) int64 tensor).
            level_start_index: (L,) int64.

        Returns:
            (B, Len, C) updated features.
        """
        attended = self.self_attn(
            src + pos, reference_points, src, spatial_shapes, level_start_index
        )
        src = self.norm1(src + self.dropout1(attended))
        ffn = self.linear2(self.dropout2(self.linear1(src, activation="relu")))
        return self.norm2(src + self.dropout3(ffn))


class MSDeformAttnEncoder(nn.Module):
    """A stack of :class:`MSDeformAttnEncoderLayer`."""

    def __init__(self, num_layers, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(
            MSDeformAttnEncoderLayer(**layer_kwargs) for _ in range(num_layers)
        )

    @staticmethod
    def reference_points(spatial_shapes, batch, num_levels, device):
        """
        Reference point of every position: its pixel center, normalized to [0, 1] by its own
        level's size, and used unchanged on every level.

        Args:
            spatial_shapes: list of L (H_l, W_l).
            batch: B.
            num_levels: L, the levels each point is used on.
            device: device of the result.

        Returns:
            (B, Len, L, 2) float32 (x, y) reference points, Len = sum_l H_l * W_l.
        """
        points = []
        for height, width in spatial_shapes:
            ref_y, ref_x = torch.meshgrid(
                (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / height,
                (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / width,
                indexing="ij",
            )
            points.append(torch.stack((ref_x.flatten(), ref_y.flatten()), -1))
        points = torch.cat(points, 0)
        return points[None, :, None, :].expand(batch, -1, num_levels, -1)

    def forward(self, src, pos, spatial_shapes, level_start_index):
        """
        Args:
            src: (B, Len, C) flattened features of all levels.
            pos: (B, Len, C) position (+ level) embeddings.
            spatial_shapes: list of L (H_l, W_l) int pairs (or an (L, 2) int64 tensor).
            level_start_index: (L,) int64.

        Returns:
            (B, Len, C) encoded features.
        """
        level_shapes = level_shapes_list(spatial_shapes)
        # At least float32 (under autocast src is a half type, too coarse for locations).
        reference_points = self.reference_points(
            level_shapes, src.shape[0], len(level_shapes), src.device
        ).to(torch.promote_types(src.dtype, torch.float32))
        for layer in self.layers:
            src = layer(src, pos, reference_points, level_shapes, level_start_index)
        return src


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """
    The encoder half of the Deformable DETR transformer: flattens the levels, adds a learned
    level embedding to the position embeddings, and runs the MSDeformAttn encoder.
    """

    def __init__(self, d_model=256, nhead=8, num_encoder_layers=6, dim_feedforward=1024,
                 dropout=0.0, num_feature_levels=3, enc_n_points=4):
        """
        Args:
            d_model: feature channels (C).
            nhead: heads of MSDeformAttn.
            num_encoder_layers: number of encoder layers.
            dim_feedforward: hidden channels of the feed-forward blocks.
            dropout: dropout of the encoder layers.
            num_feature_levels: number of input maps (L).
            enc_n_points: sampling points per head and level of MSDeformAttn.
        """
        super().__init__()
        self.d_model = d_model
        self.encoder = MSDeformAttnEncoder(
            num_encoder_layers,
            d_model=d_model,
            d_ffn=dim_feedforward,
            dropout=dropout,
            n_levels=num_feature_levels,
            n_heads=nhead,
            n_points=enc_n_points,
        )
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.reset_parameters()

    def reset_parameters(self):
        """Xavier for every matrix, Deformable DETR's init for MSDeformAttn, normal level embed."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs, pos_embeds):
        """
        Args:
            srcs: list of L maps (B, C, H_l, W_l).
            pos_embeds: list of L position embeddings (B, C, H_l, W_l).

        Returns:
            memory: (B, Len, C) encoded features of all levels, Len = sum_l H_l * W_l.
            spatial_shapes: list of L (H_l, W_l) int pairs, read from the maps' shapes (so they
                stay symbolic when the model is traced for export).
            level_start_index: (L,) int64 offset of each level in Len.
        """
        src_flatten, pos_flatten = [], []
        for level, (src, pos) in enumerate(zip(srcs, pos_embeds)):
            src_flatten.append(src.flatten(2).transpose(1, 2))
            pos_flatten.append(pos.flatten(2).transpose(1, 2) + self.level_embed[level][None, None])
        src_flatten = torch.cat(src_flatten, 1)
        pos_flatten = torch.cat(pos_flatten, 1)
        spatial_shapes = [tuple(src.shape[-2:]) for src in srcs]
        level_sizes = spatial_shapes_tensor(spatial_shapes, src_flatten.device).prod(1)
        level_start_index = torch.cat((level_sizes.new_zeros((1,)), level_sizes.cumsum(0)[:-1]))
        memory = self.encoder(src_flatten, pos_flatten, spatial_shapes, level_start_index)
        return memory, spatial_shapes, level_start_index


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(nn.Module):
    """
    Pixel decoder with an MSDeformAttn transformer encoder over the coarse features and an FPN
    step (lateral 1x1 conv + upsampled coarser output + 3x3 conv) for the finer ones.
    """

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        transformer_dropout,
        transformer_nheads,
        transformer_dim_feedforward,
        transformer_enc_layers,
        conv_dim,
        mask_dim,
        norm,
        transformer_in_features,
        common_stride,
        transformer_n_points=4,
        num_multi_scale_features=3,
        autocast_at_inference=False,
    ):
        """
        Args:
            input_shape: dict of feature name -> ShapeSpec (channels, stride) of the inputs.
            transformer_dropout: dropout of the encoder layers.
            transformer_nheads: heads of MSDeformAttn.
            transformer_dim_feedforward: hidden channels of the encoder feed-forward blocks.
            transformer_enc_layers: number of encoder layers.
            conv_dim: channels of the encoder and FPN outputs.
            mask_dim: channels of the mask features.
            norm: Detectron2 norm name of the FPN convs ("GN", "" for none).
            transformer_in_features: names of the features the encoder reads.
            common_stride: stride of the mask features; input features with stride in
                [common_stride, min encoder stride) go through the FPN step.
            transformer_n_points: sampling points per head and level of MSDeformAttn.
            num_multi_scale_features: how many outputs, coarse to fine, are returned as the
                multi-scale features for the transformer decoder.
            autocast_at_inference: in eval mode, run under the caller's autocast instead of
                float32 (see :meth:`forward_features`).
        """
        super().__init__()
        self.autocast_at_inference = autocast_at_inference
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES lists {missing}, "
                f"which are not among the input features {sorted(input_shape)} "
                f"(MODEL.SEM_SEG_HEAD.IN_FEATURES and the backbone's OUT_FEATURES)."
            )
        # Encoder inputs, coarse to fine: input_proj.0 and level 0 are the coarsest map.
        encoder_shapes = sorted(
            ((k, input_shape[k]) for k in transformer_in_features), key=lambda kv: -kv[1].stride
        )
        self.transformer_in_features = [k for k, _ in encoder_shapes]
        self.input_proj = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(shape.channels, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim)
            )
            for _, shape in encoder_shapes
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)

        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            num_feature_levels=len(encoder_shapes),
            enc_n_points=transformer_n_points,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1)
        weight_init.c2_xavier_fill(self.mask_features)

        self.num_multi_scale_features = num_multi_scale_features
        min_encoder_stride = encoder_shapes[-1][1].stride
        # FPN inputs, fine to coarse (adapter_1 / layer_1 is the finest).
        fpn_shapes = sorted(
            (
                (k, v) for k, v in input_shape.items()
                if common_stride <= v.stride < min_encoder_stride
            ),
            key=lambda kv: kv[1].stride,
        )
        self.fpn_in_features = [k for k, _ in fpn_shapes]
        use_bias = norm == ""
        self.lateral_convs, self.output_convs = [], []
        for idx, (_, shape) in enumerate(fpn_shapes):
            lateral_conv = Conv2d(
                shape.channels, conv_dim, kernel_size=1, bias=use_bias,
                norm=get_norm(norm, conv_dim),
            )
            output_conv = Conv2d(
                conv_dim, conv_dim, kernel_size=3, padding=1, bias=use_bias,
                norm=get_norm(norm, conv_dim), activation=F.relu,
            )
            weight_init.c2_xavier_fill(lateral_conv)
            weight_init.c2_xavier_fill(output_conv)
            self.add_module(f"adapter_{idx + 1}", lateral_conv)
            self.add_module(f"layer_{idx + 1}", output_conv)
            self.lateral_convs.append(lateral_conv)
            self.output_convs.append(output_conv)

    @classmethod
    def from_config(cls, cfg, input_shape):
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
            "transformer_dropout": cfg.MODEL.MASK_FORMER.DROPOUT,
            "transformer_nheads": head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS,
            "transformer_n_points": head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS,
            # The published models use 1024 here, independent of MASK_FORMER.DIM_FEEDFORWARD.
            "transformer_dim_feedforward": 1024,
            "transformer_enc_layers": head.TRANSFORMER_ENC_LAYERS,
            "transformer_in_features": head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES,
            "common_stride": head.COMMON_STRIDE,
            "autocast_at_inference": cfg.MODEL.MASK_FORMER.TEST.PRECISION != "float32",
        }

    def forward_features(self, features):
        """
        Args:
            features: dict of backbone feature name -> (B, C_f, H / stride, W / stride).

        Returns:
            mask_features: (B, mask_dim, H / common_stride, W / common_stride).
            transformer_encoder_features: (B, conv_dim, H/32, W/32) the coarsest encoder output.
            multi_scale_features: list of ``num_multi_scale_features`` maps (B, conv_dim, h, w),
                coarse to fine (1/32, 1/16, 1/8 for the published configs).

        As in the published models, the pixel decoder runs in float32 also under mixed precision
        (autocast, e.g. SOLVER.AMP.ENABLED); its outputs are float32. With
        ``autocast_at_inference`` (the reduced-precision inference of MODEL.MASK_FORMER.TEST.
        PRECISION), in eval mode it runs under the caller's autocast instead, except for the
        deformable sampling (locations, weights and the sampling itself), which stays float32.
        """
        if self.autocast_at_inference and not self.training:
            return self._forward_features(features)
        device_type = next(iter(features.values())).device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward_features({k: v.float() for k, v in features.items()})

    def _forward_features(self, features):
        """:meth:`forward_features` in the autocast state and dtype of the caller."""
        srcs, pos = [], []
        for proj, name in zip(self.input_proj, self.transformer_in_features):
            x = features[name]
            srcs.append(proj(x))
            pos.append(self.pe_layer(x))
        memory, _, _ = self.transformer(srcs, pos)

        # (B, Len, C) -> one (B, C, H_l, W_l) map per level, coarse to fine: channels-last
        # views of the encoder output, no copies (the transformer decoder flattens them back).
        out = []
        for level, src in zip(memory.split([s.shape[-2] * s.shape[-1] for s in srcs], 1), srcs):
            # (reshape, not unflatten: tracing keeps reshape's sizes symbolic, so an exported
            # graph serves every image size)
            batch, _, height, width = src.shape
            out.append(level.reshape(batch, height, width, -1).permute(0, 3, 1, 2))
        # Top-down: from the finest encoder output to the finest input feature.
        for name, lateral_conv, output_conv in zip(
            self.fpn_in_features[::-1], self.lateral_convs[::-1], self.output_convs[::-1]
        ):
            lateral = lateral_conv(features[name])
            upsampled = F.interpolate(
                out[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            out.append(output_conv(lateral + upsampled))

        return self.mask_features(out[-1]), out[0], out[: self.num_multi_scale_features]
