"""Mask2Former for Detectron2: importing this package registers its models, datasets and mappers."""
from .config import add_maskformer2_config

__all__ = ["add_maskformer2_config"]
