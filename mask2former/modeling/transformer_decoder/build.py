"""Registry and builder of transformer decoders (the "predictor" of the Mask2Former head)."""
from detectron2.utils.registry import Registry

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_MODULE")
TRANSFORMER_DECODER_REGISTRY.__doc__ = """
Registry of transformer decoders: modules that turn pixel-decoder features into per-query
class logits and mask logits. A registered class is called as ``cls(cfg, in_channels,
mask_classification)``.
"""


def build_transformer_decoder(cfg, in_channels, mask_classification=True):
    """
    Build the decoder named by ``cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``.

    Args:
        cfg: a Detectron2 config with the Mask2Former keys.
        in_channels: channels of the features the decoder reads.
        mask_classification: predict a class for each query (else masks only).
    """
    name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    return TRANSFORMER_DECODER_REGISTRY.get(name)(cfg, in_channels, mask_classification)
