"""Optimizer and learning-rate schedule of Mask2Former training."""
from detectron2.projects.deeplab import build_lr_scheduler

from .build import build_optimizer, get_param_groups

__all__ = ["build_lr_scheduler", "build_optimizer", "get_param_groups"]
