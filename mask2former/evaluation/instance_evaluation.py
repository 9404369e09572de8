"""COCO instance-segmentation AP for models whose thing classes are a subset of their classes."""
import torch

from detectron2.data.catalog import Metadata
from detectron2.evaluation import COCOEvaluator


class InstanceSegEvaluator(COCOEvaluator):
    """
    Detectron2's :class:`COCOEvaluator` (mask and box AP of the "instances" output) for
    datasets where things and stuff share one contiguous id space, e.g. the panoptic
    datasets, whose thing contiguous ids are not 0..T-1.

    Predicted classes are re-numbered to their rank among the thing classes (predictions of
    stuff classes are dropped), and the evaluator's metadata maps dataset ids to those ranks;
    for instance-only datasets (thing ids 0..T-1) this changes nothing. Everything else,
    including pycocotools' COCOeval when Detectron2 has no compiled ops, is COCOEvaluator's.
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
