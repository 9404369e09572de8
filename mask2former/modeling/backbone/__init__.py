"""Backbones of Mask2Former beyond Detectron2's own (ResNet); importing registers them."""
from .basic_resnet import build_basic_resnet_backbone
from .swin import D2SwinTransformer

__all__ = ["D2SwinTransformer", "build_basic_resnet_backbone"]
