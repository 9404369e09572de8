"""
ADE20K instance segmentation (``ade20k_instance_{train,val}``): the 100 thing classes of
ADE20K, in a COCO-format json written by ``datasets/prepare_ade20k_ins_seg.py``. Category ids
are the 0-based scene-parsing class ids (shared with the panoptic json); contiguous ids
0..99 follow their order.
"""
import os

from detectron2.data.datasets import load_coco_json

from .ade20k_categories import ADE20K_150_CATEGORIES
from .catalog import check_exists, register_dataset

_PREPARE = (
    "Download ADEChallengeData2016 and the ADE20K instance annotations "
    "(annotations_instance/), then run datasets/prepare_ade20k_ins_seg.py"
)


def _load(json_file, image_dir, name):
    check_exists(image_dir, _PREPARE)
    check_exists(json_file, _PREPARE)
    return load_coco_json(json_file, image_dir, name)


def register_all_ade20k_instance(root):
    """Register ``ade20k_instance_{train,val}`` with their files under ``root``."""
    root = os.path.join(root, "ADEChallengeData2016")
    things = [c for c in ADE20K_150_CATEGORIES if c["isthing"]]
    for split, dirname in (("train", "training"), ("val", "validation")):
        name = f"ade20k_instance_{split}"
        image_dir = os.path.join(root, "images", dirname)
        json_file = os.path.join(root, f"ade20k_instance_{split}.json")
        register_dataset(
            name,
            lambda j=json_file, i=image_dir, n=name: _load(j, i, n),
            image_root=image_dir,
            json_file=json_file,
            thing_classes=[c["name"] for c in things],
            thing_colors=[c["color"] for c in things],
            thing_dataset_id_to_contiguous_id={c["id"]: i for i, c in enumerate(things)},
            evaluator_type="coco",
        )
