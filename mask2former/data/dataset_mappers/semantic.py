"""Training mapper for semantic segmentation (INPUT.DATASET_MAPPER_NAME "mask_former_semantic")."""
import copy

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T

from .base import TrainingDatasetMapper
from .utils import (
    IMAGE_PAD_VALUE,
    image_to_tensor,
    instances_from_semantic,
    pad_to_multiple,
    read_annotation_map,
    read_image,
)


class MaskFormerSemanticDatasetMapper(TrainingDatasetMapper):
    """
    Turn a semantic-segmentation dataset dict ("file_name", "sem_seg_file_name") into a
    training input of MaskFormer:

    * "image": (C, H, W) uint8 tensor, augmented and padded to ``size_divisibility``;
    * "sem_seg": (H, W) int64 tensor of class ids, ``ignore_label`` in padding;
    * "instances": one target per class present ("gt_classes" (N,), "gt_masks" (N, H, W)).
    """

    @configurable
    def __init__(self, is_train=True, *, augmentations, image_format, ignore_label,
                 size_divisibility):
        """
        Args:
            ignore_label (int): label of unannotated pixels.
            is_train, augmentations, image_format, size_divisibility: as in
                :class:`TrainingDatasetMapper`.
        """
        super().__init__(is_train, augmentations=augmentations, image_format=image_format,
                         size_divisibility=size_divisibility)
        self.ignore_label = ignore_label

    @classmethod
    def from_config(cls, cfg, is_train=True):
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        return dict(super().from_config(cfg, is_train), ignore_label=meta.ignore_label)

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict, self.image_format)
        if "sem_seg_file_name" not in dataset_dict:
            raise ValueError(
                f"Dataset dict of {dataset_dict['file_name']} has no 'sem_seg_file_name'; "
                f"the mask_former_semantic mapper needs a semantic segmentation dataset."
            )
        sem_seg = read_annotation_map(
            dataset_dict.pop("sem_seg_file_name"), image, dataset_dict["file_name"]
        ).astype(np.float64)

        aug_input = T.AugInput(image, sem_seg=sem_seg)
        self.augmentations(aug_input)

        image = pad_to_multiple(image_to_tensor(aug_input.image), self.size_divisibility,
                                IMAGE_PAD_VALUE)
        sem_seg = pad_to_multiple(torch.as_tensor(aug_input.sem_seg.astype(np.int64)),
                                  self.size_divisibility, self.ignore_label)
        dataset_dict["image"] = image
        dataset_dict["sem_seg"] = sem_seg
        dataset_dict["instances"] = instances_from_semantic(sem_seg, self.ignore_label)
        return dataset_dict
