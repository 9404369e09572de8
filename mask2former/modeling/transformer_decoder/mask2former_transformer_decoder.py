"""
The masked-attention transformer decoder of Mask2Former (Cheng et al., CVPR 2022, Sec. 3.2).

Learnable queries are refined layer by layer. Each layer attends, round robin, to one scale of
the pixel decoder's multi-scale features (1/32, 1/16, 1/8, 1/32, ...), and its cross-attention
is restricted to the foreground of the mask that the query predicted before the layer.
"""
import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d
from torch import nn
from torch.nn import functional as F

from ..linear import Linear, linear
from .build import TRANSFORMER_DECODER_REGISTRY
from .position_encoding import PositionEmbeddingSine


def _with_pos(x, pos):
    return x if pos is None else x + pos


def _attention(attn, query, key, value, blocked=None):
    """
    ``attn(query, key, value, attn_mask=blocked, need_weights=False)[0]`` of a batch-first
    ``nn.MultiheadAttention`` (its parameters, the same function), computed without the module's
    transposes of the inputs and, when the mask is the same for every head (as
    :func:`attention_mask_from_masks` gives it for one image), without a copy of it per head;
    the projections run on :func:`linear`.

    Args:
        attn: nn.MultiheadAttention with batch_first=True and one input projection.
        query: (B, Q, C); key, value: (B, L, C).
        blocked: (B * nHeads, Q, L) bool, True where a query may NOT attend (or a float mask
            added to the attention logits), or None.

    Returns:
        (B, Q, C)
    """
    batch, queries, channels = query.shape
    length, heads = key.shape[1], attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)

    def split_heads(x, weight, bias):  # (B, N, C) -> (B, nHeads, N, C / nHeads)
        return linear(x, weight, bias).view(batch, -1, heads, channels // heads).transpose(1, 2)

    mask = None
    if blocked is not None:
        mask = blocked.view(batch, heads, queries, length)
        if mask.stride(1) == 0:  # one mask broadcast over the heads
            mask = mask[:, :1]
        if mask.dtype == torch.bool:
            mask = ~mask  # scaled_dot_product_attention: True where attention is allowed
    out = F.scaled_dot_product_attention(
        split_heads(query, w_q, b_q), split_heads(key, w_k, b_k), split_heads(value, w_v, b_v),
        attn_mask=mask, dropout_p=attn.dropout if attn.training else 0.0,
    )
    out = out.transpose(1, 2).reshape(batch, queries, channels)
    return linear(out, attn.out_proj.weight, attn.out_proj.bias)


class _ResidualBlock(nn.Module):
    """
    A decoder block ``tgt + dropout(branch(x))`` with a LayerNorm on the branch input x
    (pre-norm) or on the sum (post-norm). Subclasses create their branch layers, then call
    :meth:`_add_norm_and_init`.
    """

    def _add_norm_and_init(self, d_model, dropout, normalize_before):
        """Create the LayerNorm and dropout of the residual; Xavier-uniform init of every matrix."""
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _residual(self, tgt, branch):
        """(B, Q, C) queries -> (B, Q, C); ``branch`` maps (B, Q, C) to the (B, Q, C) update."""
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.dropout(branch(x))
        return tgt if self.normalize_before else self.norm(tgt)


class SelfAttentionLayer(_ResidualBlock):
    """Self-attention among the queries, with residual, dropout and LayerNorm."""

    def __init__(self, d_model, nhead, dropout=0.0, normalize_before=False):
        """
        Args:
            d_model: query channels (C).
            nhead: attention heads.
            dropout: dropout of the attention weights and of the residual branch.
            normalize_before: pre-norm (True) or post-norm (False).
        """
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self._add_norm_and_init(d_model, dropout, normalize_before)

    def forward(self, tgt, query_pos=None):
        """
        Args:
            tgt: (B, Q, C) queries.
            query_pos: (B, Q, C) query position embeddings, added to queries and keys.

        Returns:
            (B, Q, C) updated queries.
        """

        def attend(x):
            q = k = _with_pos(x, query_pos)
            return _attention(self.self_attn, q, k, x)

        return self._residual(tgt, attend)


class CrossAttentionLayer(_ResidualBlock):
    """Cross-attention from the queries to image features, with residual, dropout, LayerNorm."""

    def __init__(self, d_model, nhead, dropout=0.0, normalize_before=False):
        """
        Args:
            d_model: query and feature channels (C).
            nhead: attention heads.
            dropout: dropout of the attention weights and of the residual branch.
            normalize_before: pre-norm (True) or post-norm (False).
        """
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(
            d_model, nhead, dropout=dropout, batch_first=True
        )
        self._add_norm_and_init(d_model, dropout, normalize_before)

    def forward(self, tgt, memory, memory_mask=None, pos=None, query_pos=None):
        """
        Args:
            tgt: (B, Q, C) queries.
            memory: (B, HW, C) flattened image features (the values).
            memory_mask: (B * nHeads, Q, HW) bool, True where a query may NOT attend.
            pos: (B, HW, C) position embeddings of the features, added to the keys.
            query_pos: (B, Q, C) query position embeddings, added to the queries.

        Returns:
            (B, Q, C) updated queries.
        """

        def attend(x):
            return _attention(
                self.multihead_attn, _with_pos(x, query_pos), _with_pos(memory, pos), memory,
                memory_mask,
            )

        return self._residual(tgt, attend)


class FFNLayer(_ResidualBlock):
    """Two-layer feed-forward block (ReLU) with residual, dropout and LayerNorm."""

    def __init__(self, d_model, dim_feedforward=2048, dropout=0.0, normalize_before=False):
        """
        Args:
            d_model: query channels (C).
            dim_feedforward: hidden channels.
            dropout: dropout after the activation and of the residual branch.
            normalize_before: pre-norm (True) or post-norm (False).
        """
        super().__init__()
        self.linear1 = Linear(d_model, dim_feedforward)
        self.linear2 = Linear(dim_feedforward, d_model)
        self._add_norm_and_init(d_model, dropout, normalize_before)

    def forward(self, tgt):
        """(B, Q, C) -> (B, Q, C)."""
        return self._residual(
            tgt, lambda x: self.linear2(self.dropout(self.linear1(x, activation="relu")))
        )


class MLP(nn.Module):
    """A stack of Linear layers with ReLU between them (none after the last)."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x):
        """(..., input_dim) -> (..., output_dim)."""
        for i, layer in enumerate(self.layers):
            x = layer(x, activation="relu" if i < len(self.layers) - 1 else None)
        return x


def attention_mask_from_masks(mask_logits, size, num_heads):
    """
    The masked-attention mask (paper eq. 2 and 3): a query may attend only to the pixels where
    its predicted mask, resized to the feature map, has probability >= 0.5. A query whose
    mask is empty everywhere attends to the whole map instead.

    Args:
        mask_logits: (B, Q, H, W) predicted mask logits, or (B, Q, T, H, W) for a clip of T
            frames (each frame resized; "empty everywhere" then means in all T frames); not
            resized when (H, W) == size.
        size: (h, w) of the feature map the next layer attends to.
        num_heads: attention heads of that layer.

    Returns:
        (B * num_heads, Q, h * w) bool (Q, T * h * w for a clip, frame-major), True where
        attention is NOT allowed (no gradient).
    """
    batch, queries = mask_logits.shape[:2]
    frames = mask_logits.detach().reshape(batch, -1, *mask_logits.shape[-2:])
    blocked = _resize(frames, size).reshape(batch, queries, -1).sigmoid() < 0.5
    blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
    batch, queries, length = blocked.shape
    return blocked.unsqueeze(1).expand(batch, num_heads, queries, length).flatten(0, 1)


def _resize(maps, size):
    """(B, N, H, W) -> (B, N, h, w), bilinear as the published model resizes masks."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


@TRANSFORMER_DECODER_REGISTRY.register()
class MultiScaleMaskedTransformerDecoder(nn.Module):
    """
    Mask2Former's transformer decoder: ``num_layers`` layers of masked cross-attention,
    self-attention and FFN over learnable queries, reading the multi-scale features round
    robin, with a class and mask prediction before the first layer and after every layer.
    """

    @configurable
    def __init__(
        self,
        in_channels,
        mask_classification=True,
        *,
        num_classes,
        hidden_dim,
        num_queries,
        nheads,
        dim_feedforward,
        dec_layers,
        pre_norm,
        mask_dim,
        enforce_input_project,
        dropout=0.0,
        num_feature_levels=3,
    ):
        """
        Args:
            in_channels: channels of the multi-scale features.
            mask_classification: predict class logits (K + 1 with "no object") per query.
            num_classes: number of classes K.
            hidden_dim: channels of queries and attention layers (C).
            num_queries: number of queries (Q).
            nheads: attention heads.
            dim_feedforward: hidden channels of the FFN blocks.
            dec_layers: number of decoder layers (the config's DEC_LAYERS - 1).
            pre_norm: LayerNorm before (True) or after (False) each block.
            mask_dim: channels of the per-pixel mask features (and of the mask embeddings).
            enforce_input_project: project features with a 1x1 conv even when
                ``in_channels == hidden_dim``.
            dropout: dropout of the decoder layers.
            num_feature_levels: number of feature scales read round robin.
        """
        super().__init__()
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, dropout, pre_norm) for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, dropout, pre_norm) for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, dropout, pre_norm) for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)

        self.num_queries = num_queries
        # Content features of the queries (the decoder's initial state) ...
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        # ... and their position embeddings, added in every attention.
        self.query_embed = nn.Embedding(num_queries, hidden_dim)

        self.num_feature_levels = num_feature_levels
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
                weight_init.c2_xavier_fill(proj)
                self.input_proj.append(proj)
            else:
                self.input_proj.append(nn.Sequential())

        if mask_classification:
            self.class_embed = Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels, mask_classification):
        dec_layers = cfg.MODEL.MASK_FORMER.DEC_LAYERS
        if dec_layers < 1:
            raise ValueError(
                f"MODEL.MASK_FORMER.DEC_LAYERS must be >= 1 (the prediction before the first "
                f"layer counts as one), got {dec_layers}."
            )
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "hidden_dim": cfg.MODEL.MASK_FORMER.HIDDEN_DIM,
            "num_queries": cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES,
            "nheads": cfg.MODEL.MASK_FORMER.NHEADS,
            "dim_feedforward": cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD,
            "dec_layers": dec_layers - 1,
            "pre_norm": cfg.MODEL.MASK_FORMER.PRE_NORM,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "enforce_input_project": cfg.MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ,
            "dropout": cfg.MODEL.MASK_FORMER.DROPOUT,
        }

    def forward(self, x, mask_features, return_aux_outputs=True):
        """
        Args:
            x: list of ``num_feature_levels`` feature maps (B, in_channels, H_l, W_l), in the
                order the layers read them (coarse to fine: 1/32, 1/16, 1/8).
            mask_features: (B, mask_dim, H/4, W/4) per-pixel embeddings.
            return_aux_outputs: also return the predictions before the last one (for deep
                supervision). Inference reads only the last prediction; without the others,
                their full-resolution masks are not computed.

        Returns:
            dict with
              "pred_logits": (B, Q, K + 1) class logits of the last prediction (only with
                  mask_classification),
              "pred_masks": (B, Q, H/4, W/4) mask logits of the last prediction,
              "aux_outputs" (only with return_aux_outputs): list of ``num_layers`` dicts with
                  the same keys: the prediction before the first layer and after each layer
                  except the last, in order.

        Each layer's attention mask is the previous prediction's mask at the scale of the
        features the layer reads (:func:`attention_mask_from_masks`). That mask is computed at
        that scale directly, as ``einsum(mask_embed, resize(mask_features))``: bilinear
        resizing is linear in each channel, so this equals resizing the full-resolution mask
        (up to float rounding), for a fraction of the work.
        """
        self._check_levels(x)
        src, pos, size_list = self._memory(x)
        return self._decode(src, pos, size_list, mask_features, return_aux_outputs)

    def _check_levels(self, x):
        if len(x) != self.num_feature_levels:
            raise ValueError(
                f"{type(self).__name__} expects {self.num_feature_levels} feature maps, got "
                f"{len(x)}."
            )

    def _memory(self, x):
        """
        What the cross-attention layers attend to, per level.

        Returns:
            src: list of (B, h_l * w_l, C) projected features plus the level embedding;
            pos: list of (B, h_l * w_l, C) sine position embeddings;
            size_list: list of (h_l, w_l).
        """
        src, pos, size_list = [], [], []
        for i, feature in enumerate(x):
            size_list.append(tuple(feature.shape[-2:]))
            # (B, C, h, w) -> (B, hw, C)
            pos.append(self.pe_layer(feature).flatten(2).transpose(1, 2))
            src.append(
                self.input_proj[i](feature).flatten(2).transpose(1, 2)
                + self.level_embed.weight[i][None, None, :]
            )
        return src, pos, size_list

    def _decode(self, src, pos, size_list, mask_features, return_aux_outputs):
        """
        The decoder layers and predictions (see :meth:`forward`), from the memory of
        :meth:`_memory` and the mask features (any shape :meth:`_mask_logits` takes, batch
        first).
        """
        batch = src[0].shape[0]
        # The mask features at each attention scale.
        attention_mask_features = [self._at_scale(mask_features, size) for size in size_list]

        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)
        output = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)

        predictions = []
        for i in range(self.num_layers + 1):
            if i > 0:  # layer i - 1, with the level and mask chosen after prediction i - 1
                output = self.transformer_cross_attention_layers[i - 1](
                    output, src[level], memory_mask=attn_mask, pos=pos[level],
                    query_pos=query_pos,
                )
                output = self.transformer_self_attention_layers[i - 1](output, query_pos=query_pos)
                output = self.transformer_ffn_layers[i - 1](output)
            decoder_output = self.decoder_norm(output)
            mask_embed = self.mask_embed(decoder_output)
            is_last = i == self.num_layers
            if is_last or return_aux_outputs:
                predictions.append(self._predict(decoder_output, mask_embed, mask_features))
            if not is_last:
                level = i % self.num_feature_levels
                attn_mask = attention_mask_from_masks(
                    self._mask_logits(mask_embed, attention_mask_features[level]),
                    size_list[level], self.num_heads,
                )

        out = dict(predictions[-1])
        if return_aux_outputs:
            out["aux_outputs"] = predictions[:-1]
        return out

    @staticmethod
    def _mask_logits(mask_embed, mask_features):
        """(B, Q, mask_dim) mask embeddings . (B, mask_dim, h, w) features -> (B, Q, h, w)."""
        return torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)

    @staticmethod
    def _at_scale(mask_features, size):
        """(B, mask_dim, H, W) mask features resized to ``size`` (h, w)."""
        return _resize(mask_features, size)

    def forward_prediction_heads(self, output, mask_features):
        """
        Class and mask predictions of the current queries.

        Args:
            output: (B, Q, C) queries.
            mask_features: (B, mask_dim, H/4, W/4) per-pixel embeddings.

        Returns:
            dict with "pred_masks" (B, Q, H/4, W/4) and, with mask_classification,
            "pred_logits" (B, Q, K + 1).
        """
        decoder_output = self.decoder_norm(output)
        return self._predict(decoder_output, self.mask_embed(decoder_output), mask_features)

    def _predict(self, decoder_output, mask_embed, mask_features):
        """:meth:`forward_prediction_heads` from the normalized queries and mask embeddings."""
        prediction = {"pred_masks": self._mask_logits(mask_embed, mask_features)}
        if self.mask_classification:
            prediction["pred_logits"] = self.class_embed(decoder_output)
        return prediction
