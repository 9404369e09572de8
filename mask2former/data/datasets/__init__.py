"""
Dataset registration. Importing ``mask2former.data`` registers every dataset the published
configs name, with files under ``$DETECTRON2_DATASETS`` (default ``datasets``); call
:func:`register_all` to register them again for another root. COCO instance segmentation
(``coco_2017_{train,val}``) and Cityscapes (``cityscapes_fine_*``) are Detectron2's own.

A dataset of one's own is described by a file (:mod:`.dataset_file`) and registered by
:func:`register_dataset_file`, or with a config by :func:`apply_dataset_file` (DATASETS.FILE);
:func:`derive_schedule` sizes a training schedule of SOLVER.MAX_ITER 0 from it.
"""
import os

from .register_ade20k_full import register_all_ade20k_full
from .register_ade20k_instance import register_all_ade20k_instance
from .register_ade20k_panoptic import register_all_ade20k_panoptic
from .register_ade20k_semantic import register_all_ade20k_semantic
from .register_coco_panoptic_annos_semseg import register_all_coco_panoptic_annos_sem_seg
from .register_mapillary_vistas import register_all_mapillary_vistas
from .generated_shapes import register_generated_shapes
from .register_dataset_file import apply_dataset_file, derive_schedule, register_dataset_file


def register_all(root):
    """Register (or re-register) all Mask2Former datasets with their files under ``root``."""
    register_all_coco_panoptic_annos_sem_seg(root)
    register_all_ade20k_semantic(root)
    register_all_ade20k_panoptic(root)
    register_all_ade20k_instance(root)
    register_all_ade20k_full(root)
    register_all_mapillary_vistas(root)
    register_generated_shapes(os.path.join(root, "generated", "shapes"))


register_all(os.getenv("DETECTRON2_DATASETS", "datasets"))
