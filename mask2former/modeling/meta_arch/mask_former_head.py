"""The Mask2Former head: pixel decoder + transformer decoder, as a Detectron2 sem-seg head."""
from detectron2.config import configurable
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from torch import nn

from ..pixel_decoder import build_pixel_decoder
from ..transformer_decoder import build_transformer_decoder


@SEM_SEG_HEADS_REGISTRY.register()
class MaskFormerHead(nn.Module):
    """
    Runs the pixel decoder on the backbone features, then the transformer decoder
    ("predictor") on the pixel decoder's multi-scale features and mask features.
    """

    @configurable
    def __init__(self, *, pixel_decoder, predictor):
        """
        Args:
            pixel_decoder: module with ``forward_features(features)`` returning
                (mask_features, transformer_encoder_features, multi_scale_features).
            predictor: transformer decoder called as ``predictor(multi_scale_features,
                mask_features)``.
        """
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor

    @classmethod
    def from_config(cls, cfg, input_shape):
        in_feature = cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE
        if in_feature != "multi_scale_pixel_decoder":
            raise ValueError(
                f"MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE={in_feature!r} is not supported: "
                f"MaskFormerHead feeds the pixel decoder's multi-scale features to the "
                f"transformer decoder; set it to 'multi_scale_pixel_decoder'."
            )
        return {
            "pixel_decoder": build_pixel_decoder(cfg, input_shape),
            "predictor": build_transformer_decoder(
                cfg, cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM, mask_classification=True
            ),
        }

    def forward(self, features, mask=None, **predictor_kwargs):
        """
        Args:
            features: dict of backbone feature name -> (B, C_f, H / stride, W / stride).
            mask: padding mask of the input; not used (as in the published models, padding is
                attended like image pixels). Accepted for Detectron2's head call convention.
            predictor_kwargs: passed on to the transformer decoder (e.g. the video decoder's
                ``num_frames``).

        Returns:
            the transformer decoder's predictions: {"pred_logits": (B, Q, K + 1),
            "pred_masks": (B, Q, H/4, W/4), "aux_outputs": [...]}.
        """
        mask_features, _, multi_scale_features = self.pixel_decoder.forward_features(features)
        return self.predictor(multi_scale_features, mask_features, **predictor_kwargs)
