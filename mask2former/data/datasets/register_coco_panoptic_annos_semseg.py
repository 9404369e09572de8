"""
COCO panoptic segmentation as the Mask2Former configs use it:

* ``coco_2017_{train,val}_panoptic``: panoptic json + panoptic PNGs (replaces Detectron2's
  registration of these names, whose metadata is the same but whose dicts differ);
* ``coco_2017_{train,val}_panoptic_with_sem_seg``: the same, plus the semantic PNGs derived
  from the panoptic annotation by ``datasets/prepare_coco_semantic_annos_from_panoptic.py``
  (``coco/panoptic_semseg_{train,val}2017``), so that semantic mIoU can be evaluated too.

The 133 classes (80 things, 53 stuff) share one contiguous id space, in the order of
Detectron2's ``COCO_CATEGORIES``.
"""
import os

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .catalog import panoptic_meta, register_panoptic

_PREPARE = (
    "Download COCO 2017 images and panoptic annotations (unzip annotations/panoptic_*2017.zip) "
    "and run datasets/prepare_coco_semantic_annos_from_panoptic.py"
)

# name -> (image dir, panoptic PNG dir, panoptic json, instance json, semantic PNG dir)
_COCO_PANOPTIC_SPLITS = {
    split: (
        f"coco/{split}2017",
        f"coco/panoptic_{split}2017",
        f"coco/annotations/panoptic_{split}2017.json",
        f"coco/annotations/instances_{split}2017.json",
        f"coco/panoptic_semseg_{split}2017",
    )
    for split in ("train", "val")
}


def register_all_coco_panoptic_annos_sem_seg(root):
    """Register the COCO panoptic datasets with their files under ``root``."""
    meta = panoptic_meta(COCO_CATEGORIES)
    for split, paths in _COCO_PANOPTIC_SPLITS.items():
        image_dir, pan_dir, pan_json, ins_json, sem_dir = (os.path.join(root, p) for p in paths)
        for name, semseg in (
            (f"coco_2017_{split}_panoptic", None),
            (f"coco_2017_{split}_panoptic_with_sem_seg", sem_dir),
        ):
            register_panoptic(
                name,
                pan_json,
                image_dir,
                pan_dir,
                meta,
                _PREPARE,
                semseg_dir=semseg,
                json_file=ins_json,
                evaluator_type="coco_panoptic_seg",
                ignore_label=255,
                label_divisor=1000,
            )
