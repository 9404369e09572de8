from .build import PIXEL_DECODER_REGISTRY, build_pixel_decoder
from .ms_deform_attn import MSDeformAttn
from .msdeformattn import MSDeformAttnPixelDecoder

__all__ = [
    "PIXEL_DECODER_REGISTRY",
    "build_pixel_decoder",
    "MSDeformAttn",
    "MSDeformAttnPixelDecoder",
]
