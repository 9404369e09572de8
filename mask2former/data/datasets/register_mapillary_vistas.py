"""
Mapillary Vistas v1.2, semantic (``mapillary_vistas_sem_seg_{train,val}``) and panoptic
(``mapillary_vistas_panoptic_{train,val}``) segmentation, read from the official download
unchanged (no prepare script): ``{training,validation}/images/*.jpg``,
``{split}/labels/*.png`` (label 65 = unlabeled, the ignore label) and
``{split}/panoptic/panoptic_2018.json`` + ``{split}/panoptic/*.png``.
"""
import os

from .catalog import panoptic_meta, register_panoptic, register_sem_seg
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
        register_sem_seg(
            f"mapillary_vistas_sem_seg_{split}",
            image_dir,
            label_dir,
            _PREPARE,
            stuff_classes=meta["stuff_classes"],
            stuff_colors=meta["stuff_colors"],
            evaluator_type="sem_seg",
            ignore_label=MAPILLARY_VISTAS_IGNORE_LABEL,
        )
        register_panoptic(
            f"mapillary_vistas_panoptic_{split}",
            pan_json,
            image_dir,
            pan_dir,
            meta,
            _PREPARE,
            semseg_dir=label_dir,
            evaluator_type="mapillary_vistas_panoptic_seg",
            ignore_label=MAPILLARY_VISTAS_IGNORE_LABEL,
            label_divisor=1000,
        )
