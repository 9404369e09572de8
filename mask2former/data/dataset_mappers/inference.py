"""The inference (test-time) mapper: Detectron2's test-time input, read with our image reader."""
import copy

from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .utils import image_to_tensor, read_image


class InferenceDatasetMapper:
    """
    Turn a dataset dict into a model input for inference: "image" (C, H, W) uint8 tensor,
    resized by the test augmentations (shortest edge to INPUT.MIN_SIZE_TEST, longest at most
    INPUT.MAX_SIZE_TEST), with the dict's "height", "width" and "file_name" kept so the model
    answers at the original size. As Detectron2's test ``DatasetMapper`` but read with
    :func:`mask2former.data.image_io.read_image` (16-bit and float images scaled, unreadable
    files named); object and semantic annotations are dropped (evaluators read the ground
    truth themselves).
    """

    @configurable
    def __init__(self, *, augmentations, image_format):
        """
        Args:
            augmentations (list): Detectron2 augmentations applied to the image.
            image_format (str): e.g. "RGB".
        """
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format

    @classmethod
    def from_config(cls, cfg):
        return {
            "augmentations": utils.build_augmentation(cfg, is_train=False),
            "image_format": cfg.INPUT.FORMAT,
        }

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict, self.image_format)
        dataset_dict.setdefault("height", image.shape[0])
        dataset_dict.setdefault("width", image.shape[1])
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        dataset_dict["image"] = image_to_tensor(aug_input.image)
        dataset_dict.pop("annotations", None)
        dataset_dict.pop("sem_seg_file_name", None)
        return dataset_dict
