"""
Video Mask2Former's model components; importing this package registers the video decoder.

The matcher and the criterion are the image model's, which accept clips: masks with a frame
axis, (Q, T, H, W), are matched on the same random points in every frame (one vector of T * P
values per mask) and their losses are taken per (query, frame) mask, normalized by the number
of tracks. ``VideoHungarianMatcher`` and ``VideoSetCriterion`` name them for video code.
"""
from mask2former.modeling.criterion import SetCriterion as VideoSetCriterion
from mask2former.modeling.matcher import HungarianMatcher as VideoHungarianMatcher

from . import transformer_decoder
from .transformer_decoder import PositionEmbeddingSine3D, VideoMultiScaleMaskedTransformerDecoder

__all__ = [
    "VideoHungarianMatcher",
    "VideoSetCriterion",
    "PositionEmbeddingSine3D",
    "VideoMultiScaleMaskedTransformerDecoder",
    "transformer_decoder",
]
