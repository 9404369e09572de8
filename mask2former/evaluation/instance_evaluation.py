"""COCO instance-segmentation AP for models whose thing classes are a subset of their classes."""
import torch

from detectron2.data.catalog import Metadata
from detectron2.evaluation import COCOEvaluator

from .fast_cocoeval import cocoeval_for, detectron2_cocoeval


class InstanceSegEvaluator(COCOEvaluator):
    """
    Detectron2's :class:`COCOEvaluator` (mask and box AP of the "instances" output) for
    datasets where things and stuff share one contiguous id space, e.g. the panoptic
    datasets, whose thing contiguous ids are not 0..T-1.

    Predicted classes are re-numbered to their rank among the thing classes (predictions of
    stuff classes are dropped), and the evaluator's metadata maps dataset ids to those ranks;
    for instance-only datasets (thing ids 0..T-1) this changes nothing.

    AP is computed by the fastest COCOeval available (``use_fast_impl=True``, the default:
    faster-coco-eval, else Detectron2's compiled one, for datasets with integer image ids; see
    ``fast_cocoeval.py``), which gives pycocotools' numbers, or by pycocotools' own
    (``use_fast_impl=False``); the log names it.
    Everything else is COCOEvaluator's.
    """

    def __init__(self, dataset_name, *args, **kwargs):
        super().__init__(dataset_name, *args, **kwargs)
        meta = self._metadata
        dataset_to_contiguous = meta.thing_dataset_id_to_contiguous_id
        thing_contiguous = sorted(dataset_to_contiguous.values())
        self._thing_rank = {c: rank for rank, c in enumerate(thing_contiguous)}
        fields = meta.as_dict()
        fields.update(
            thing_dataset_id_to_contiguous_id={
                d: self._thing_rank[c] for d, c in dataset_to_contiguous.items()
            },
            thing_classes=[meta.thing_classes[c] for c in thing_contiguous],
        )
        self._metadata = Metadata(**fields)

    def _eval_predictions(self, predictions, img_ids=None):
        cocoeval, name = cocoeval_for(self._coco_api, self._use_fast_impl)
        self._logger.info(f"COCO AP computed by {name}.")
        with detectron2_cocoeval(cocoeval):
            super()._eval_predictions(predictions, img_ids)

    def process(self, inputs, outputs):
        remapped = []
        for output in outputs:
            if "instances" in output:
                instances = output["instances"].to("cpu")
                is_thing = [c in self._thing_rank for c in instances.pred_classes.tolist()]
                instances = instances[torch.tensor(is_thing, dtype=torch.bool)]
                instances.pred_classes = instances.pred_classes.apply_(self._thing_rank.get)
                output = dict(output, instances=instances)
            remapped.append(output)
        super().process(inputs, remapped)
