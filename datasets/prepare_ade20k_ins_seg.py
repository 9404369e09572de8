#!/usr/bin/env python
"""
ADE20K instance annotations -> COCO-format instance json for ``ade20k_instance_{train,val}``
(and for instance AP on ``ade20k_panoptic_val``).

Reads, under ``$DETECTRON2_DATASETS/ADEChallengeData2016``, ``images/{training,validation}``
and the official ``annotations_instance/{split}/*.png`` (R channel = instance category
1..100, G channel = instance id, 0 = none). Writes ``ade20k_instance_{train,val}.json``: one
RLE-encoded annotation per instance; category ids are the 0-based scene-parsing class ids
(as in the panoptic json), image ids the file stems.

Usage: python datasets/prepare_ade20k_ins_seg.py [DATASETS_ROOT]
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import tqdm
from PIL import Image

from mask2former.data.datasets.ade20k_categories import ADE20K_150_CATEGORIES, ade20k_instances

SPLITS = (("train", "training"), ("val", "validation"))


def instance_annotations(instance_path, image_id, image_size, first_id):
    """
    COCO annotations of the instances in one ``annotations_instance`` PNG.

    Args:
        image_id (str): id of the image in the json.
        image_size (tuple[int, int]): (H, W) of the image, which the PNG must match.
        first_id (int): annotation id of the first instance.
    """
    instance = np.asarray(Image.open(instance_path).convert("RGB")).astype(np.int64)
    if instance.shape[:2] != tuple(image_size):
        raise ValueError(f"Annotation {instance_path} has size {instance.shape[1]}x"
                         f"{instance.shape[0]} (WxH) but its image is "
                         f"{image_size[1]}x{image_size[0]}.")
    annotations = []
    for mask, class_id in ade20k_instances(instance, instance_path):
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append({
            "id": first_id + len(annotations),
            "image_id": image_id,
            "category_id": class_id,
            "segmentation": rle,
            "area": int(mask_util.area(rle)),
            "bbox": [float(x) for x in mask_util.toBbox(rle)],
            "iscrowd": 0,
        })
    return annotations


def main(root):
    root = Path(root) / "ADEChallengeData2016"
    categories = [{"id": c["id"], "name": c["name"]} for c in ADE20K_150_CATEGORIES
                  if c["isthing"]]
    for split, dirname in SPLITS:
        image_dir = root / "images" / dirname
        instance_dir = root / "annotations_instance" / dirname
        for path in (image_dir, instance_dir):
            if not path.is_dir():
                raise FileNotFoundError(
                    f"{path} not found: unzip ADEChallengeData2016.zip and the instance "
                    f"annotations (annotations_instance.tar) into {root}.")
        images, annotations = [], []
        for image_path in tqdm.tqdm(sorted(image_dir.glob("*.jpg")), desc=f"ADE20K {split}"):
            with Image.open(image_path) as image:
                w, h = image.size
            images.append({"id": image_path.stem, "file_name": image_path.name,
                           "width": w, "height": h})
            annotations += instance_annotations(instance_dir / f"{image_path.stem}.png",
                                                image_path.stem, (h, w), len(annotations) + 1)
        with open(root / f"ade20k_instance_{split}.json", "w") as f:
            json.dump({"images": images, "annotations": annotations,
                       "categories": categories}, f)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.getenv("DETECTRON2_DATASETS", "datasets"))
