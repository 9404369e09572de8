"""Registry and builder of pixel decoders (the per-pixel half of the Mask2Former head)."""
from detectron2.utils.registry import Registry

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = """
Registry of pixel decoders: modules that turn backbone features into per-pixel mask features
and multi-scale features for the transformer decoder. A registered class is called as
``cls(cfg, input_shape)`` and has ``forward_features(features)``.
"""


def build_pixel_decoder(cfg, input_shape):
    """
    Build the pixel decoder named by ``cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME``.

    Args:
        cfg: a Detectron2 config with the Mask2Former keys.
        input_shape: dict of backbone feature name -> ShapeSpec.
    """
    name = cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME
    model = PIXEL_DECODER_REGISTRY.get(name)(cfg, input_shape)
    if not callable(getattr(model, "forward_features", None)):
        raise ValueError(
            f"MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME={name!r}: the pixel decoder must have a "
            f"forward_features(features) method."
        )
    return model
