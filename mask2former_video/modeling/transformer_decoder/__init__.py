from .position_encoding import PositionEmbeddingSine3D
from .video_mask2former_transformer_decoder import VideoMultiScaleMaskedTransformerDecoder

__all__ = ["PositionEmbeddingSine3D", "VideoMultiScaleMaskedTransformerDecoder"]
