"""
ADE20K-Full semantic segmentation, 847 classes (``ade20k_full_sem_seg_{train,val}``):
images and 16-bit TIFF train-id labels (65535 = ignore) written by
``datasets/prepare_ade20k_full_sem_seg.py`` from the ADE20K 2021_17_01 release.
"""
import os

from .ade20k_full_categories import ADE20K_FULL_CLASSES
from .catalog import register_sem_seg

_PREPARE = "Download ADE20K_2021_17_01 and run datasets/prepare_ade20k_full_sem_seg.py"
# Ignore label of the 16-bit label images.
ADE20K_FULL_IGNORE_LABEL = 65535


def register_all_ade20k_full(root):
    """Register ``ade20k_full_sem_seg_{train,val}`` with their files under ``root``."""
    root = os.path.join(root, "ADE20K_2021_17_01")
    for split, dirname in (("train", "training"), ("val", "validation")):
        image_dir = os.path.join(root, "images_detectron2", dirname)
        gt_dir = os.path.join(root, "annotations_detectron2", dirname)
        register_sem_seg(
            f"ade20k_full_sem_seg_{split}",
            image_dir,
            gt_dir,
            _PREPARE,
            gt_ext="tif",
            stuff_classes=[name for _, name in ADE20K_FULL_CLASSES],
            stuff_dataset_id_to_contiguous_id={i: i for i in range(len(ADE20K_FULL_CLASSES))},
            evaluator_type="sem_seg",
            ignore_label=ADE20K_FULL_IGNORE_LABEL,
        )
