"""
Training mappers for instance segmentation on COCO-format datasets: "mask_former_instance"
(shortest-edge resize, crop, color jitter, flip) and "coco_instance_lsj" (large-scale jitter).
"""
import copy

from detectron2.data import transforms as T

from .base import LargeScaleJitterMixin, TrainingDatasetMapper
from .utils import (
    IMAGE_PAD_VALUE,
    build_augmentation,
    image_to_tensor,
    instances_from_annotations,
    make_instances,
    pad_to_multiple,
    read_image,
)


class MaskFormerInstanceDatasetMapper(TrainingDatasetMapper):
    """
    Turn a COCO-format instance dataset dict ("file_name", "annotations" with polygon or RLE
    "segmentation" and contiguous "category_id") into a training input:

    * "image": (C, H, W) uint8 tensor, augmented and padded to ``size_divisibility``;
    * "instances": one target per visible non-crowd object ("gt_classes" (N,),
      "gt_masks" (N, H, W)); N = 0 for an image without objects.
    """

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return dict(super().from_config(cfg, is_train),
                    augmentations=build_augmentation(cfg, category_area_constraint=False))

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict, self.image_format)
        original_size = image.shape[:2]
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = image_to_tensor(aug_input.image)
        instances = instances_from_annotations(
            dataset_dict.pop("annotations", []), transforms, original_size,
            tuple(image.shape[-2:]),
        )

        image = pad_to_multiple(image, self.size_divisibility, IMAGE_PAD_VALUE)
        padded_size = tuple(image.shape[-2:])
        masks = pad_to_multiple(instances.gt_masks.tensor, self.size_divisibility, False)
        dataset_dict["image"] = image
        dataset_dict["instances"] = make_instances(
            padded_size, instances.gt_classes.tolist(), list(masks)
        )
        return dataset_dict


class COCOInstanceLSJDatasetMapper(LargeScaleJitterMixin, MaskFormerInstanceDatasetMapper):
    """
    :class:`MaskFormerInstanceDatasetMapper` with large-scale jitter (flip, ResizeScale,
    FixedSizeCrop to INPUT.IMAGE_SIZE): every image comes out IMAGE_SIZE x IMAGE_SIZE.
    """
