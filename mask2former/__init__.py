"""Mask2Former for Detectron2: importing this package registers its models, datasets and mappers."""
from .config import add_maskformer2_config
from . import data
from . import modeling
from .maskformer_model import MaskFormer

__all__ = ["add_maskformer2_config", "MaskFormer"]
