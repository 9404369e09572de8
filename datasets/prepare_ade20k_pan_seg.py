#!/usr/bin/env python
"""
ADE20K scene parsing + instance annotations -> panoptic annotations for
``ade20k_panoptic_{train,val}`` (150 classes: 100 things, 50 stuff).

Reads, under ``$DETECTRON2_DATASETS/ADEChallengeData2016``:

* ``images/{training,validation}/*.jpg``;
* ``annotations/{split}/*.png``: class label per pixel (0 = other, k = class k - 1);
* ``annotations_instance/{split}/*.png`` (the official instance annotations): R channel =
  instance category 1..100, G channel = instance id (0 = no instance).

Writes ``ade20k_panoptic_{train,val}/*.png`` (segment id as R + 256 G + 256^2 B, 0 = void)
and ``ade20k_panoptic_{train,val}.json`` (COCO panoptic format; category ids are the 0-based
class ids). Stuff segments come from the scene-parsing labels, one per stuff class; thing
segments from the instance annotation, one per instance (drawn over stuff where they overlap).

Usage: python datasets/prepare_ade20k_pan_seg.py [DATASETS_ROOT]
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import tqdm
from panopticapi.utils import id2rgb
from PIL import Image

from mask2former.data.datasets.ade20k_categories import ADE20K_150_CATEGORIES, ade20k_instances

SPLITS = (("train", "training"), ("val", "validation"))


def read_annotations(image_path, semantic_path, instance_path):
    """
    Returns:
        (H, W) int64 class ids (-1 = other), (H, W, 3) int64 instance PNG (see
        :func:`ade20k_instances`), image (height, width).
    """
    with Image.open(image_path) as image:
        size = (image.height, image.width)
    semantic = np.asarray(Image.open(semantic_path)).astype(np.int64) - 1
    instance = np.asarray(Image.open(instance_path).convert("RGB")).astype(np.int64)
    for path, array in ((semantic_path, semantic), (instance_path, instance)):
        if array.shape[:2] != size:
            raise ValueError(f"Annotation {path} has size {array.shape[1]}x{array.shape[0]} "
                             f"(WxH) but its image {image_path} is {size[1]}x{size[0]}.")
    return semantic, instance, size


def bounding_box(mask):
    """COCO [x, y, width, height] of a non-empty (H, W) bool mask."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
            int(ys.max() - ys.min() + 1)]


def panoptic_segments(semantic, instance, source):
    """
    Args:
        semantic: (H, W) int64 class ids (-1 = other).
        instance: (H, W, 3) instance PNG; ``source`` names it in error messages.

    Returns:
        (H, W) int64 segment ids (0 = void) and the list of segment dicts (COCO panoptic
        "segments_info").
    """
    pan = np.zeros(semantic.shape, dtype=np.int64)
    segments = []

    def add(mask, category_id):
        segment_id = len(segments) + 1
        pan[mask] = segment_id
        segments.append({"id": segment_id, "category_id": int(category_id), "iscrowd": 0})

    for class_id in np.unique(semantic):
        if class_id >= 0 and not ADE20K_150_CATEGORIES[class_id]["isthing"]:
            add(semantic == class_id, class_id)
    for mask, class_id in ade20k_instances(instance, source):
        add(mask, class_id)
    kept = []
    for segment in segments:  # stuff partly covered by things may vanish entirely
        mask = pan == segment["id"]
        if mask.any():
            kept.append(dict(segment, area=int(mask.sum()), bbox=bounding_box(mask)))
    return pan, kept


def main(root):
    root = Path(root) / "ADEChallengeData2016"
    for split, dirname in SPLITS:
        image_dir = root / "images" / dirname
        semantic_dir = root / "annotations" / dirname
        instance_dir = root / "annotations_instance" / dirname
        for path in (image_dir, semantic_dir, instance_dir):
            if not path.is_dir():
                raise FileNotFoundError(
                    f"{path} not found: unzip ADEChallengeData2016.zip and the instance "
                    f"annotations (annotations_instance.tar) into {root}.")
        output_dir = root / f"ade20k_panoptic_{split}"
        output_dir.mkdir(exist_ok=True)
        images, annotations = [], []
        for image_path in tqdm.tqdm(sorted(image_dir.glob("*.jpg")), desc=f"ADE20K {split}"):
            stem = image_path.stem
            semantic, instance, (h, w) = read_annotations(
                image_path, semantic_dir / f"{stem}.png", instance_dir / f"{stem}.png")
            pan, segments = panoptic_segments(semantic, instance, instance_dir / f"{stem}.png")
            Image.fromarray(id2rgb(pan)).save(output_dir / f"{stem}.png")
            images.append({"id": stem, "file_name": image_path.name, "width": w, "height": h})
            annotations.append(
                {"image_id": stem, "file_name": f"{stem}.png", "segments_info": segments})
        with open(root / f"ade20k_panoptic_{split}.json", "w") as f:
            json.dump({"images": images, "annotations": annotations,
                       "categories": ADE20K_150_CATEGORIES}, f)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.getenv("DETECTRON2_DATASETS", "datasets"))
