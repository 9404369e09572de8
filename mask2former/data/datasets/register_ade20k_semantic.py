"""
ADE20K semantic segmentation, 150 classes (``ade20k_sem_seg_{train,val}``): the images of
ADEChallengeData2016 and the labels shifted by ``datasets/prepare_ade20k_sem_seg.py`` into
``annotations_detectron2`` (0 = "other" becomes 255 = ignore, label k becomes k - 1).
"""
import os

from .ade20k_categories import ADE20K_150_CATEGORIES
from .catalog import register_sem_seg

_PREPARE = "Download ADEChallengeData2016 and run datasets/prepare_ade20k_sem_seg.py"


def register_all_ade20k_semantic(root):
    """Register ``ade20k_sem_seg_{train,val}`` with their files under ``root``."""
    root = os.path.join(root, "ADEChallengeData2016")
    for split, dirname in (("train", "training"), ("val", "validation")):
        image_dir = os.path.join(root, "images", dirname)
        gt_dir = os.path.join(root, "annotations_detectron2", dirname)
        register_sem_seg(
            f"ade20k_sem_seg_{split}",
            image_dir,
            gt_dir,
            _PREPARE,
            stuff_classes=[c["name"] for c in ADE20K_150_CATEGORIES],
            stuff_colors=[c["color"] for c in ADE20K_150_CATEGORIES],
            evaluator_type="sem_seg",
            ignore_label=255,
        )
