"""
Training dataset mappers, chosen by name with INPUT.DATASET_MAPPER_NAME, and the inference
mapper of the test loaders.
"""
from .inference import InferenceDatasetMapper
from .instance import COCOInstanceLSJDatasetMapper, MaskFormerInstanceDatasetMapper
from .panoptic import COCOPanopticLSJDatasetMapper, MaskFormerPanopticDatasetMapper
from .semantic import MaskFormerSemanticDatasetMapper

# INPUT.DATASET_MAPPER_NAME -> mapper class.
DATASET_MAPPERS = {
    "mask_former_semantic": MaskFormerSemanticDatasetMapper,
    "mask_former_panoptic": MaskFormerPanopticDatasetMapper,
    "mask_former_instance": MaskFormerInstanceDatasetMapper,
    "coco_instance_lsj": COCOInstanceLSJDatasetMapper,
    "coco_panoptic_lsj": COCOPanopticLSJDatasetMapper,
}


def build_train_mapper(cfg):
    """The training mapper named by ``cfg.INPUT.DATASET_MAPPER_NAME``, built from ``cfg``."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name not in DATASET_MAPPERS:
        raise KeyError(
            f"INPUT.DATASET_MAPPER_NAME {name!r} is not one of {sorted(DATASET_MAPPERS)}."
        )
    return DATASET_MAPPERS[name](cfg, is_train=True)
