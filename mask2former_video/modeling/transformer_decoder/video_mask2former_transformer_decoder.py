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

    def forward(self, x, mask_features, num_frames=1, return_aux_outputs=True):
        """
        Args:
            x: list of ``num_feature_levels`` feature maps (B * T, in_channels, H_l, W_l) of
                B clips of T frames (clip-major), coarse to fine (1/32, 1/16, 1/8).
            mask_features: (B * T, mask_dim, H/4, W/4) per-pixel embeddings.
            num_frames: T.
            return_aux_outputs: also return the predictions before the last one (training).

        Returns:
            dict with
              "pred_logits": (B, Q, K + 1) class logits of the last prediction,
              "pred_masks": (B, Q, T, H/4, W/4) mask logits of the last prediction,
              "aux_outputs" (only with return_aux_outputs): list of ``num_layers`` dicts with
                  the same keys: the prediction before the first layer and after each layer
                  except the last, in order.

        The layers and predictions are the image decoder's (:meth:`_decode`), over the
        tokens of all frames of a clip.
        """
        self._check_levels(x)
        if mask_features.shape[0] % num_frames:
            raise ValueError(
                f"VideoMultiScaleMaskedTransformerDecoder: {mask_features.shape[0]} frames do "
                f"not make clips of num_frames={num_frames}."
            )
        batch = mask_features.shape[0] // num_frames
        src, pos, size_list = [], [], []
        for i, feature in enumerate(x):
            size_list.append(tuple(feature.shape[-2:]))
            clip = feature.view(batch, num_frames, *feature.shape[1:])
            pos.append(_clip_tokens(self.pe_layer(clip).flatten(0, 1), batch, num_frames))
            src.append(
                _clip_tokens(self.input_proj[i](feature), batch, num_frames)
                + self.level_embed.weight[i][None, None, :]
            )
        mask_features = mask_features.view(batch, num_frames, *mask_features.shape[1:])
        return self._decode(src, pos, size_list, mask_features, return_aux_outputs)

    @staticmethod
    def _mask_logits(mask_embed, mask_features):
        """(B, Q, mask_dim) . (B, T, mask_dim, h, w) clip features -> (B, Q, T, h, w)."""
        return einsum("bqc,btchw->bqthw", mask_embed, mask_features)

    @staticmethod
    def _at_scale(mask_features, size):
        """(B, T, mask_dim, H, W) clip mask features, each frame resized to ``size``."""
        frames = MultiScaleMaskedTransformerDecoder._at_scale(mask_features.flatten(0, 1), size)
        return frames.view(*mask_features.shape[:3], *frames.shape[-2:])
