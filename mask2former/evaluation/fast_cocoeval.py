"""
The COCOeval implementation behind COCO box and mask AP.

Detectron2's ``COCOEvaluator`` computes AP with pycocotools' ``COCOeval`` (pure Python), or with
``use_fast_impl=True`` (its default) with its compiled ``COCOeval_opt``, which exists only where
Detectron2 was built with its C++ ops: without them, every evaluation ran in pure Python (about
70 s for COCO val's mask AP). :func:`fast_cocoeval` picks, in this order:

1. faster-coco-eval (``faster_coco_eval.COCOeval_faster``, a dependency of this package): a
   maintained C++ implementation of the same algorithm, which reads pycocotools' ``COCO``
   objects and gives pycocotools' numbers (tests/test_fast_cocoeval.py checks the 12 AP / AR
   numbers to 1e-6);
2. Detectron2's ``COCOeval_opt``, where Detectron2's ops are compiled;
3. pycocotools' ``COCOeval`` (the log names the fallback and how to leave it).

Both fast implementations index images by number: a dataset with other image ids (ADE20K's
are file names such as "ADE_val_00000001") is evaluated by pycocotools
(:func:`cocoeval_for`). :func:`detectron2_cocoeval` makes ``COCOEvaluator`` run the chosen
class.
"""
import contextlib
import functools
import importlib

from detectron2.evaluation import coco_evaluation
from pycocotools.cocoeval import COCOeval

__all__ = ["fast_cocoeval", "cocoeval_for", "detectron2_cocoeval"]

# Detectron2's compiled implementation, or pycocotools' COCOeval when its ops are not built.
_DETECTRON2_COCOEVAL_OPT = coco_evaluation.COCOeval_opt


@functools.lru_cache(maxsize=None)
def fast_cocoeval():
    """
    The fastest COCOeval class available and its description for the log.

    Returns:
        (type, str): a class with pycocotools' ``COCOeval(coco_gt, coco_dt, iou_type)``
        interface (``params``, ``evaluate``, ``accumulate``, ``summarize``, ``stats``,
        ``eval["precision"]``), and what it is.
    """
    try:
        faster_coco_eval = importlib.import_module("faster_coco_eval")
    except ImportError:
        pass
    else:
        return _faster_cocoeval_class(faster_coco_eval.COCOeval_faster), (
            f"faster-coco-eval {faster_coco_eval.__version__} (C++)")
    if _DETECTRON2_COCOEVAL_OPT is not COCOeval:
        return _DETECTRON2_COCOEVAL_OPT, "Detectron2's compiled COCOeval_opt"
    return COCOeval, ("pycocotools' COCOeval, pure Python (slow on large datasets: "
                      "pip install faster-coco-eval)")


def cocoeval_for(coco_gt, use_fast_impl=True):
    """
    The COCOeval class (and its description) for the ground truth ``coco_gt`` (a pycocotools
    ``COCO``): :func:`fast_cocoeval` when ``use_fast_impl`` and every image id is an integer,
    else pycocotools' ``COCOeval``.
    """
    if not use_fast_impl:
        return COCOeval, "pycocotools' COCOeval"
    cocoeval_class, name = fast_cocoeval()
    other_ids = [i for i in coco_gt.getImgIds() if not isinstance(i, int)]
    if cocoeval_class is not COCOeval and other_ids:
        return COCOeval, (f"pycocotools' COCOeval ({name} needs integer image ids, not e.g. "
                          f"{other_ids[0]!r})")
    return cocoeval_class, name


def _faster_cocoeval_class(cocoeval_faster):
    class FasterCOCOeval(cocoeval_faster):
        """faster-coco-eval's COCOeval, printing its summary as pycocotools does."""

        def __init__(self, coco_gt, coco_dt, iou_type):
            super().__init__(coco_gt, coco_dt, iou_type, print_function=print)

    return FasterCOCOeval


@contextlib.contextmanager
def detectron2_cocoeval(cocoeval_class):
    """
    Within this context, Detectron2's ``COCOEvaluator`` with ``use_fast_impl=True`` evaluates
    with ``cocoeval_class`` (it looks ``COCOeval_opt`` up in its module when it evaluates).
    """
    original = coco_evaluation.COCOeval_opt
    coco_evaluation.COCOeval_opt = cocoeval_class
    try:
        yield
    finally:
        coco_evaluation.COCOeval_opt = original
