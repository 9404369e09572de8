"""
Mapillary Vistas v1.2, semantic (``mapillary_vistas_sem_seg_{train,val}``) and panoptic
(``mapillary_vistas_panoptic_{train,val}``) segmentation, read from the official download
unchanged (no prepare script): ``{training,validation}/images/*.jpg``,
``{split}/labels/*.png`` (label 65 = unlabeled, the ignore label) and
``{split}/panoptic/panoptic_2018.json`` + ``{split}/panoptic/*.png``.
"""
import os

from .catalog import load_panoptic_json, load_sem_seg_checked, panoptic_meta, register_dataset
from .mapillary_vistas_categories import MAPILLARY_VISTAS_IGNORE_LABEL, MAPILLARY_VISTAS_LABELS

_PREPARE = (
    "Download Mapillary Vistas v1.2 (research edition) and unzip it to mapillary_vistas/ "
    "so that it holds training/ and validation/ with images/, labels/ and panoptic/"
)

# The 65 evaluated classes; panoptic_2018.json's category id of label k is k + 1.
_CLASSES = [c for c in MAPILLARY_VISTAS_LABELS if c["evaluate"]]
PANOPTIC_CATEGORIES = [
    {"id": k + 1, "name": c["readable"], "color": c["color"], "isthing": int(c["instances"])}
    for k, c in enumerate(_CLASSES)
]


def register_all_mapillary_vistas(root):
    """Register the Mapillary Vistas semantic and panoptic datasets under ``root``."""
    root = os.path.join(root, "mapillary_vistas")
    meta = panoptic_meta(PANOPTIC_CATEGORIES)
    for split, dirname in (("train", "training"), ("val", "validation")):
        image_dir = os.path.join(root, dirname, "images")
        label_dir = os.path.join(root, dirname, "labels")
        pan_dir = os.path.join(root, dirname, "panoptic")
        pan_json = os.path.join(pan_dir, "panoptic_2018.json")
        common = dict(
            image_root=image_dir,
            sem_seg_root=label_dir,
            ignore_label=MAPILLARY_VISTAS_IGNORE_LABEL,
        )
        register_dataset(
            f"mapillary_vistas_sem_seg_{split}",
            lambda x=image_dir, y=label_dir: load_sem_seg_checked(y, x, _PREPARE),
            stuff_classes=meta["stuff_classes"],
            stuff_colors=meta["stuff_colors"],
            evaluator_type="sem_seg",
            **common,
        )
        register_dataset(
            f"mapillary_vistas_panoptic_{split}",
            lambda j=pan_json, i=image_dir, p=pan_dir, s=label_dir: load_panoptic_json(
                j, i, p, meta, _PREPARE, semseg_dir=s
            ),
            panoptic_root=pan_dir,
            panoptic_json=pan_json,
            evaluator_type="mapillary_vistas_panoptic_seg",
            label_divisor=1000,
            **common,
            **meta,
        )
