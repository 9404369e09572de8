"""
Detectron2's semantic evaluators, also for models that output the label map
("sem_seg_labels", MODEL.MASK_FORMER.TEST.SEMANTIC_OUTPUT "labels") instead of the scores.
"""
from detectron2.evaluation import CityscapesSemSegEvaluator as _CityscapesSemSegEvaluator
from detectron2.evaluation import SemSegEvaluator as _SemSegEvaluator

__all__ = ["SemSegEvaluator", "CityscapesSemSegEvaluator"]


class _LabelMap:
    """
    An (H, W) int64 label map in the place of (K, H, W) scores: Detectron2's semantic evaluators
    read only ``output["sem_seg"].argmax(dim=0)``, which for a label map is the map itself.
    """

    def __init__(self, labels):
        self.labels = labels

    def argmax(self, dim):
        if dim != 0:
            raise ValueError(f"a label map stands for the argmax over classes (dim 0), not {dim}")
        return self.labels


class _ReadsLabelMaps:
    """Put before a Detectron2 semantic evaluator: outputs with "sem_seg_labels" are evaluated."""

    def process(self, inputs, outputs):
        outputs = [
            dict(output, sem_seg=_LabelMap(output["sem_seg_labels"]))
            if "sem_seg_labels" in output and "sem_seg" not in output else output
            for output in outputs
        ]
        super().process(inputs, outputs)


class SemSegEvaluator(_ReadsLabelMaps, _SemSegEvaluator):
    """Detectron2's :class:`SemSegEvaluator` (mIoU, fwIoU, pixel accuracy) that also reads
    "sem_seg_labels" (H, W): the same confusion matrix as from the scores' argmax."""


class CityscapesSemSegEvaluator(_ReadsLabelMaps, _CityscapesSemSegEvaluator):
    """Detectron2's :class:`CityscapesSemSegEvaluator` that also reads "sem_seg_labels"."""
