"""
Training mappers for panoptic segmentation: "mask_former_panoptic" (shortest-edge resize,
crop, color jitter, flip) and "coco_panoptic_lsj" (large-scale jitter).
"""
import copy

import numpy as np

from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from .base import LargeScaleJitterMixin, TrainingDatasetMapper
from .utils import (
    IMAGE_PAD_VALUE,
    check_segment_ids,
    image_to_tensor,
    instances_from_panoptic,
    pad_to_multiple,
    panoptic_ids,
    read_annotation_map,
    read_image,
    semantic_from_panoptic,
)


class MaskFormerPanopticDatasetMapper(TrainingDatasetMapper):
    """
    Turn a panoptic dataset dict ("file_name", "pan_seg_file_name", "segments_info" with
    contiguous "category_id", optionally "sem_seg_file_name") into a training input:

    * "image": (C, H, W) uint8 tensor, augmented and padded to ``size_divisibility``;
    * "instances": one target per visible non-crowd segment ("gt_classes" (N,),
      "gt_masks" (N, H, W)); N = 0 for an image without segments.

    The semantic map (read, or derived from the panoptic annotation) drives the crop's
    single-category area constraint.
    """

    @configurable
    def __init__(self, is_train=True, *, augmentations, image_format, ignore_label,
                 size_divisibility):
        """
        Args:
            ignore_label (int): label of unannotated pixels in the semantic map.
            is_train, augmentations, image_format, size_divisibility: as in
                :class:`TrainingDatasetMapper`.
        """
        super().__init__(is_train, augmentations=augmentations, image_format=image_format,
                         size_divisibility=size_divisibility)
        self.ignore_label = ignore_label

    @classmethod
    def from_config(cls, cfg, is_train=True):
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        return dict(super().from_config(cfg, is_train), ignore_label=meta.get("ignore_label", 255))

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict, self.image_format)
        pan_seg_file = dataset_dict.pop("pan_seg_file_name")
        pan_seg = read_annotation_map(pan_seg_file, image, dataset_dict["file_name"], mode="RGB")
        segments_info = dataset_dict.pop("segments_info")
        ids = panoptic_ids(pan_seg)
        check_segment_ids(ids, segments_info, pan_seg_file)
        if "sem_seg_file_name" in dataset_dict:
            sem_seg = read_annotation_map(
                dataset_dict.pop("sem_seg_file_name"), image, dataset_dict["file_name"]
            ).astype(np.float64)
        else:
            sem_seg = semantic_from_panoptic(ids.numpy(), segments_info, self.ignore_label)

        aug_input = T.AugInput(image, sem_seg=sem_seg)
        transforms = self.augmentations(aug_input)
        pan_ids = panoptic_ids(transforms.apply_segmentation(pan_seg))

        dataset_dict["image"] = pad_to_multiple(
            image_to_tensor(aug_input.image), self.size_divisibility, IMAGE_PAD_VALUE
        )
        pan_ids = pad_to_multiple(pan_ids, self.size_divisibility, 0)
        dataset_dict["instances"] = instances_from_panoptic(pan_ids, segments_info)
        return dataset_dict


class COCOPanopticLSJDatasetMapper(LargeScaleJitterMixin, MaskFormerPanopticDatasetMapper):
    """
    :class:`MaskFormerPanopticDatasetMapper` with large-scale jitter (flip, ResizeScale,
    FixedSizeCrop to INPUT.IMAGE_SIZE): every image comes out IMAGE_SIZE x IMAGE_SIZE.
    """
