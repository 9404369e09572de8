"""
Pieces shared by the training dataset mappers: reading an image with its annotation map,
the augmentation lists, padding, and turning semantic / panoptic / instance annotations into
the per-segment targets of MaskFormer (``Instances`` with "gt_classes" and "gt_masks").
"""
import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from panopticapi.utils import rgb2id

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.projects.point_rend import ColorAugSSDTransform
from detectron2.structures import BitMasks, Instances

from .. import image_io

# Value of padded image pixels (the same as Detectron2's FixedSizeCrop).
IMAGE_PAD_VALUE = 128


def _read_file(path, image_format):
    """:func:`mask2former.data.image_io.read_image`; its error also says how to fix the dataset."""
    try:
        return image_io.read_image(path, format=image_format)
    except image_io.ImageReadError as e:
        raise image_io.ImageReadError(
            f"{e}. Restore the file (re-run the dataset's download / prepare script) or remove "
            "it from the dataset."
        ) from e


def read_image(dataset_dict, image_format):
    """Read ``dataset_dict["file_name"]``: (H, W, C) uint8 array in ``image_format``."""
    image = _read_file(dataset_dict["file_name"], image_format)
    utils.check_image_size(dataset_dict, image)
    return image


def read_annotation_map(path, image, image_path, mode=None):
    """
    Read a semantic or panoptic annotation PNG/TIFF and check that it matches the image.

    Returns:
        ndarray: (H, W) for label maps (``mode=None``), (H, W, 3) uint8 for ``mode="RGB"``.

    Raises:
        ValueError: naming both files when the annotation's size differs from the image's.
    """
    ann = _read_file(path, mode)
    if ann.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"Annotation {path} has size {ann.shape[1]}x{ann.shape[0]} (WxH) but its image "
            f"{image_path} has size {image.shape[1]}x{image.shape[0]}; the annotation must "
            f"have the size of its image (re-run the dataset's prepare script)."
        )
    return ann


def build_augmentation(cfg, category_area_constraint=True):
    """
    Training augmentation of the semantic / panoptic / instance mappers: random resize of the
    shortest edge, random crop (with ``category_area_constraint``, no class covers more than
    INPUT.CROP.SINGLE_CATEGORY_MAX_AREA of the crop; this needs the semantic map as
    ``AugInput.sem_seg``), SSD color jitter when INPUT.COLOR_AUG_SSD, horizontal flip.
    """
    augs = [
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    ]
    if cfg.INPUT.CROP.ENABLED and category_area_constraint:
        augs.append(
            T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE,
                cfg.INPUT.CROP.SIZE,
                cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
                cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            )
        )
    elif cfg.INPUT.CROP.ENABLED:
        augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
    if cfg.INPUT.COLOR_AUG_SSD:
        augs.append(ColorAugSSDTransform(img_format=cfg.INPUT.FORMAT))
    augs.append(T.RandomFlip())
    return augs


def build_lsj_augmentation(cfg):
    """
    Large-scale jitter: horizontal flip, resize to a random scale in [MIN_SCALE, MAX_SCALE]
    of an IMAGE_SIZE square (aspect ratio kept), then crop / pad to IMAGE_SIZE x IMAGE_SIZE.
    """
    size = cfg.INPUT.IMAGE_SIZE
    return [
        T.RandomFlip(horizontal=True),
        T.ResizeScale(cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, size, size),
        T.FixedSizeCrop(crop_size=(size, size)),
    ]


def image_to_tensor(image):
    """(H, W, C) array -> (C, H, W) tensor of the same dtype."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


def pad_to_multiple(tensor, size_divisibility, value):
    """Pad the last two axes (H, W) of ``tensor`` on the bottom / right to a multiple."""
    if size_divisibility <= 0:
        return tensor
    h, w = tensor.shape[-2:]
    pad_h = (size_divisibility - h % size_divisibility) % size_divisibility
    pad_w = (size_divisibility - w % size_divisibility) % size_divisibility
    return F.pad(tensor, (0, pad_w, 0, pad_h), value=value)


def make_instances(image_size, classes, masks):
    """
    Args:
        image_size (tuple[int, int]): (H, W).
        classes (list[int]): contiguous class id of each segment.
        masks (list[Tensor]): (H, W) bool mask of each segment.

    Returns:
        Instances: "gt_classes" (N,) int64 and "gt_masks" BitMasks (N, H, W); N may be 0.
    """
    instances = Instances(image_size)
    instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
    if masks:
        instances.gt_masks = BitMasks(torch.stack(masks))
    else:
        instances.gt_masks = BitMasks(torch.zeros((0,) + tuple(image_size), dtype=torch.bool))
    return instances


def instances_from_semantic(sem_seg, ignore_label):
    """One target per class present in ``sem_seg`` (H, W) int64, ignore label excluded."""
    classes = [int(c) for c in torch.unique(sem_seg) if c != ignore_label]
    return make_instances(sem_seg.shape, classes, [sem_seg == c for c in classes])


def panoptic_ids(pan_seg_rgb):
    """Panoptic PNG colors (H, W, 3) uint8 -> (H, W) int64 segment ids R + 256 G + 256^2 B."""
    return torch.from_numpy(rgb2id(pan_seg_rgb).astype(np.int64))


def check_segment_ids(pan_ids, segments_info, pan_seg_file):
    """
    Raise ``ValueError`` naming ``pan_seg_file`` when its (H, W) segment ids ``pan_ids`` hold
    an id other than 0 (void) that ``segments_info`` does not list: the PNG and the json
    disagree, and those pixels would silently be trained on as unlabeled.
    """
    listed = {segment["id"] for segment in segments_info}
    unknown = sorted(set(torch.unique(pan_ids).tolist()) - listed - {0})
    if unknown:
        raise ValueError(
            f"Panoptic annotation {pan_seg_file} holds segment ids {unknown[:10]} that its json "
            f"entry does not list (it lists {sorted(listed)[:10]}); the PNG and the json do not "
            "match: re-run the dataset's prepare script or fix the json."
        )


def semantic_from_panoptic(pan_ids, segments_info, ignore_label):
    """(H, W) segment ids -> (H, W) contiguous class ids, ``ignore_label`` outside segments."""
    sem_seg = np.full(pan_ids.shape, ignore_label, dtype=np.float64)
    for segment in segments_info:
        sem_seg[pan_ids == segment["id"]] = segment["category_id"]
    return sem_seg


def instances_from_panoptic(pan_ids, segments_info):
    """One target per visible, non-crowd segment of ``pan_ids`` (H, W) int64."""
    classes, masks = [], []
    for segment in segments_info:
        if segment.get("iscrowd", 0):
            continue
        mask = pan_ids == segment["id"]
        if mask.any():
            classes.append(segment["category_id"])
            masks.append(mask)
    return make_instances(tuple(pan_ids.shape), classes, masks)


def rasterize(segmentation, height, width):
    """A COCO "segmentation" (polygons, RLE or a mask array) as an (H, W) uint8 0/1 mask."""
    if isinstance(segmentation, np.ndarray):
        return (segmentation > 0).astype(np.uint8)
    if isinstance(segmentation, list):  # polygons
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):  # uncompressed RLE
        rle = mask_util.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_util.decode(rle).astype(np.uint8)


def instances_from_annotations(annos, transforms, original_size, image_size):
    """
    Rasterize the COCO-style object annotations (polygons or RLE, contiguous "category_id")
    of one image at its original size (H0, W0), apply ``transforms`` to each mask, and keep
    one target per non-crowd object still visible in the (H, W) = ``image_size`` result.
    Rasterizing first makes crops exact without polygon clipping.
    """
    classes, masks = [], []
    for obj in annos:
        if obj.get("iscrowd", 0):
            continue
        mask = transforms.apply_segmentation(rasterize(obj["segmentation"], *original_size))
        mask = torch.from_numpy(np.ascontiguousarray(mask) == 1)  # padding may be 0 or 255
        if mask.any():
            classes.append(obj["category_id"])
            masks.append(mask)
    return make_instances(image_size, classes, masks)
