"""
ADE20K panoptic segmentation (``ade20k_panoptic_{train,val}``): 150 classes, 100 things
and 50 stuff, written by ``datasets/prepare_ade20k_pan_seg.py`` from the scene-parsing labels
and the official instance annotations. Category ids are the 0-based scene-parsing class ids,
which are also the contiguous ids.

The metadata names the instance json of ``datasets/prepare_ade20k_ins_seg.py`` as
``json_file`` (same category ids), so instance AP can be evaluated on the panoptic dataset.
"""
import os

from .ade20k_categories import ADE20K_150_CATEGORIES
from .catalog import panoptic_meta, register_panoptic

_PREPARE = (
    "Download ADEChallengeData2016 and the ADE20K instance annotations, then run "
    "datasets/prepare_ade20k_sem_seg.py, datasets/prepare_ade20k_pan_seg.py and "
    "datasets/prepare_ade20k_ins_seg.py"
)


def register_all_ade20k_panoptic(root):
    """Register ``ade20k_panoptic_{train,val}`` with their files under ``root``."""
    root = os.path.join(root, "ADEChallengeData2016")
    meta = panoptic_meta(ADE20K_150_CATEGORIES)
    for split, dirname in (("train", "training"), ("val", "validation")):
        image_dir = os.path.join(root, "images", dirname)
        pan_dir = os.path.join(root, f"ade20k_panoptic_{split}")
        pan_json = os.path.join(root, f"ade20k_panoptic_{split}.json")
        sem_dir = os.path.join(root, "annotations_detectron2", dirname)
        register_panoptic(
            f"ade20k_panoptic_{split}",
            pan_json,
            image_dir,
            pan_dir,
            meta,
            _PREPARE,
            semseg_dir=sem_dir,
            json_file=os.path.join(root, f"ade20k_instance_{split}.json"),
            evaluator_type="ade20k_panoptic_seg",
            ignore_label=255,
            label_divisor=1000,
        )
