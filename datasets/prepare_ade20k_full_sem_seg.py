#!/usr/bin/env python
"""
ADE20K full release (ADE20K_2021_17_01) -> images and labels for
``ade20k_full_sem_seg_{train,val}`` (847 classes).

Reads ``$DETECTRON2_DATASETS/ADE20K_2021_17_01/index_ade20k.pkl`` (the release's index:
"folder" and "filename" of every image, folders relative to the directory that holds
ADE20K_2021_17_01) and each image's ``*_seg.png`` (object class = R // 10 * 256 + G).
Writes ``ADE20K_2021_17_01/images_detectron2/{training,validation}/*.jpg`` and
``annotations_detectron2/{split}/*.tif``: 16-bit train ids (0..846, 65535 = ignore), the
shorter side resized to 512 when longer.

Usage: python datasets/prepare_ade20k_full_sem_seg.py [DATASETS_ROOT]
"""
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import tqdm
from PIL import Image

from mask2former.data.datasets.ade20k_full_categories import ADE20K_FULL_CLASSES
from mask2former.data.datasets.register_ade20k_full import ADE20K_FULL_IGNORE_LABEL

MAX_SHORT_SIDE = 512


def train_id_lookup():
    """Array mapping every possible class value of ``*_seg.png`` to its train id."""
    lut = np.full(256 // 10 * 256 + 256, ADE20K_FULL_IGNORE_LABEL, dtype=np.uint16)
    for train_id, (ade_id, _) in enumerate(ADE20K_FULL_CLASSES):
        lut[ade_id] = train_id
    return lut


def convert(image_path, lut, image_out, label_out):
    """Resize one image and its class map and write them (labels as train ids)."""
    image = Image.open(image_path).convert("RGB")
    seg_path = image_path.with_name(image_path.stem + "_seg.png")
    seg = np.asarray(Image.open(seg_path).convert("RGB")).astype(np.int32)
    if seg.shape[:2] != (image.height, image.width):
        raise ValueError(f"Annotation {seg_path} has size {seg.shape[1]}x{seg.shape[0]} (WxH) "
                         f"but its image {image_path} is {image.width}x{image.height}.")
    labels = Image.fromarray(lut[seg[..., 0] // 10 * 256 + seg[..., 1]])
    short = min(image.size)
    if short > MAX_SHORT_SIDE:
        size = tuple(round(s * MAX_SHORT_SIDE / short) for s in image.size)
        image = image.resize(size, Image.BILINEAR)
        labels = labels.resize(size, Image.NEAREST)
    image.save(image_out)
    labels.save(label_out)


def main(root):
    root = Path(root)
    index_file = root / "ADE20K_2021_17_01" / "index_ade20k.pkl"
    if not index_file.is_file():
        raise FileNotFoundError(f"{index_file} not found: unzip ADE20K_2021_17_01.zip into "
                                f"{root}.")
    with open(index_file, "rb") as f:
        index = pickle.load(f)
    out = root / "ADE20K_2021_17_01"
    for split in ("training", "validation"):
        (out / "images_detectron2" / split).mkdir(parents=True, exist_ok=True)
        (out / "annotations_detectron2" / split).mkdir(parents=True, exist_ok=True)
    lut = train_id_lookup()
    for folder, name in tqdm.tqdm(list(zip(index["folder"], index["filename"])),
                                  desc="ADE20K-Full"):
        split = "validation" if name.split("_")[1] == "val" else "training"
        convert(root / folder / name, lut, out / "images_detectron2" / split / name,
                out / "annotations_detectron2" / split / (Path(name).stem + ".tif"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.getenv("DETECTRON2_DATASETS", "datasets"))
