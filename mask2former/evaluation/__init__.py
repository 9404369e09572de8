"""Evaluators of Mask2Former beyond Detectron2's own."""
from .instance_evaluation import InstanceSegEvaluator

__all__ = ["InstanceSegEvaluator"]
