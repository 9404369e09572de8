"""Mask2Former's model components; importing this package registers them with Detectron2."""
from . import backbone
from . import meta_arch
from . import pixel_decoder
from . import transformer_decoder
from .criterion import SetCriterion
from .matcher import HungarianMatcher
