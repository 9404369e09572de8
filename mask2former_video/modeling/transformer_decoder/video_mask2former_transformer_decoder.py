"""
The masked-attention transformer decoder of video Mask2Former ("Mask2Former for Video Instance
Segmentation", Cheng et al., 2021): the image decoder's layers and parameters, with queries that
attend to the features of all frames of a clip at once and predict one mask per frame, i.e. a
track ("a query is an object through time").
"""
from detectron2.config import configurable
from torch import einsum

from mask2former.modeling.transformer_decoder import TRANSFORMER_DECODER_REGISTRY
from mask2former.modeling.transformer_decoder.mask2former_transformer_decoder import (
    MultiScaleMaskedTransformerDecoder,
    attention_mask_from_masks,
)

from .position_encoding import PositionEmbeddingSine3D


def _clip_tokens(maps, batch, frames):
    """(B * T, C, h, w) frame maps of B clips -> (B, T * h * w, C) tokens, frame-major."""
    _, channels, height, width = maps.shape
    clips = maps.view(batch, frames, channels, height, width)
    return clips.permute(0, 1, 3, 4, 2).reshape(batch, frames * height * width, channels)


@TRANSFORMER_DECODER_REGISTRY.register()
class VideoMultiScaleMaskedTransformerDecoder(MultiScaleMaskedTransformerDecoder):
    """
    :class:`MultiScaleMaskedTransformerDecoder` over clips of T frames: the memory of a layer
    is the projected features of its scale in all T frames (T * h * w tokens, with the level
    embedding and a 3-D sine position embedding, :class:`PositionEmbeddingSine3D`), the masked
    attention is restricted to the query's mask in all frames, and each prediction holds a
    mask per frame. Same constructor, config and parameters as the image decoder, so image
    checkpoints load into it.
    """

    @configurable
    def __init__(self, *args, **kwargs):
        """See :class:`MultiScaleMaskedTransformerDecoder`."""
        super().__init__(*args, **kwargs)
        self.pe_layer = PositionEmbeddingSine3D(self.pe_layer.num_pos_feats, normalize=True)

    def forward(self, x, mask_features, num_frames=1):
        """
        Args:
            x: list of ``num_feature_levels`` feature maps (B * T, in_channels, H_l, W_l) of
                B clips of T frames (clip-major), coarse to fine (1/32, 1/16, 1/8).
            mask_features: (B * T, mask_dim, H/4, W/4) per-pixel embeddings.
            num_frames: T.

        Returns:
            dict with
              "pred_logits": (B, Q, K + 1) class logits of the last prediction,
              "pred_masks": (B, Q, T, H/4, W/4) mask logits of the last prediction,
              "aux_outputs": list of ``num_layers`` dicts with the same keys: the prediction
                  before the first layer and after each layer except the last, in order.
        """
        if len(x) != self.num_feature_levels:
            raise ValueError(
                f"VideoMultiScaleMaskedTransformerDecoder expects {self.num_feature_levels} "
                f"feature maps, got {len(x)}."
            )
        if mask_features.shape[0] % num_frames:
            raise ValueError(
                f"VideoMultiScaleMaskedTransformerDecoder: {mask_features.shape[0]} frames do "
                f"not make clips of num_frames={num_frames}."
            )
        batch = mask_features.shape[0] // num_frames
        src, pos, size_list = [], [], []
        for i, feature in enumerate(x):
            size_list.append(feature.shape[-2:])
            clip = feature.view(batch, num_frames, *feature.shape[1:])
            pos.append(_clip_tokens(self.pe_layer(clip).flatten(0, 1), batch, num_frames))
            src.append(
                _clip_tokens(self.input_proj[i](feature), batch, num_frames)
                + self.level_embed.weight[i][None, None, :]
            )
        mask_features = mask_features.view(batch, num_frames, *mask_features.shape[1:])

        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)
        output = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)

        predictions = [self.forward_prediction_heads(output, mask_features)]
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            attn_mask = attention_mask_from_masks(
                predictions[-1]["pred_masks"], size_list[level], self.num_heads
            )
            output = self.transformer_cross_attention_layers[i](
                output, src[level], memory_mask=attn_mask, pos=pos[level], query_pos=query_pos
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_pos)
            output = self.transformer_ffn_layers[i](output)
            predictions.append(self.forward_prediction_heads(output, mask_features))

        out = dict(predictions[-1])
        out["aux_outputs"] = predictions[:-1]
        return out

    def forward_prediction_heads(self, output, mask_features):
        """
        Class and per-frame mask predictions of the current queries.

        Args:
            output: (B, Q, C) queries.
            mask_features: (B, T, mask_dim, H/4, W/4) per-pixel embeddings of the clips.

        Returns:
            dict with "pred_masks" (B, Q, T, H/4, W/4) and "pred_logits" (B, Q, K + 1).
        """
        decoder_output = self.decoder_norm(output)
        mask_embed = self.mask_embed(decoder_output)
        prediction = {"pred_masks": einsum("bqc,btchw->bqthw", mask_embed, mask_features)}
        if self.mask_classification:
            prediction["pred_logits"] = self.class_embed(decoder_output)
        return prediction
