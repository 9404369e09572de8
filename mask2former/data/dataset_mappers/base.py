"""
What the training dataset mappers share: their constructor (augmentations, image format,
padding multiple) and the large-scale-jitter variant of a mapper's configuration.
"""
from detectron2.config import configurable
from detectron2.data import transforms as T

from .utils import build_augmentation, build_lsj_augmentation


class TrainingDatasetMapper:
    """
    Base of the training mappers; a subclass turns one dataset dict into a training input in
    ``__call__``, applying ``self.augmentations`` to the image read in ``self.image_format`` and
    padding it to a multiple of ``self.size_divisibility``.
    """

    @configurable
    def __init__(self, is_train=True, *, augmentations, image_format, size_divisibility):
        """
        Args:
            is_train: must be True (inference uses Detectron2's default test mapper).
            augmentations (list): Detectron2 augmentations, applied to the image and its
                annotations.
            image_format (str): e.g. "RGB".
            size_divisibility (int): pad to a multiple of this (<= 0: no padding).
        """
        if not is_train:
            raise ValueError(f"{type(self).__name__} is for training only.")
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.size_divisibility = size_divisibility

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return {
            "is_train": is_train,
            "augmentations": build_augmentation(cfg),
            "image_format": cfg.INPUT.FORMAT,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
        }


class LargeScaleJitterMixin:
    """
    Put before a :class:`TrainingDatasetMapper` subclass to get its large-scale-jitter variant:
    flip, ResizeScale and FixedSizeCrop to INPUT.IMAGE_SIZE instead of its augmentations, and
    no padding (every image comes out IMAGE_SIZE x IMAGE_SIZE).
    """

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return dict(super().from_config(cfg, is_train), augmentations=build_lsj_augmentation(cfg),
                    size_divisibility=-1)
