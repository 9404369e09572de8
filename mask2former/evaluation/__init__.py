"""Evaluators of Mask2Former beyond Detectron2's own."""
from .instance_evaluation import InstanceSegEvaluator
from .semantic_evaluation import CityscapesSemSegEvaluator, SemSegEvaluator

__all__ = ["CityscapesSemSegEvaluator", "InstanceSegEvaluator", "SemSegEvaluator"]
