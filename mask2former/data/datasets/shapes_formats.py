"""
The generated shapes dataset (:mod:`.generated_shapes`) written in the annotation formats that
a dataset file reads, each with its dataset YAML: examples of every format, and the data of the
tests that check that every format loads to the same dataset dicts.

Each format's folder under ``output`` holds ``<format>.yaml`` and its annotations; the images
stay in the generated dataset's folders (the YAMLs point there). Formats:

* ``coco_polygons``: COCO instance json, one polygon per object (instance task);
* ``coco_rle``: the generated COCO instance json, compressed RLE (instance task);
* ``coco_rle_uncompressed``: the same masks as uncompressed RLE (instance task);
* ``coco_panoptic``: the generated COCO panoptic json and PNGs (panoptic task);
* ``sem_seg_ids``: the generated single-channel label PNGs (semantic task);
* ``sem_seg_palette``: palette PNGs (Pascal VOC style, index = class id; semantic task);
* ``labelme``: a LabelMe json per image with a polygon per stuff region and per object
  (panoptic task);
* ``yolo``: YOLO segmentation txt per image (normalized polygons) and ``data.yaml`` with the
  names (instance task).

Polygons follow pixel edges (:func:`.mask_polygons.mask_to_polygon`), so every format holds
the generated masks exactly.
"""
import json
import os

import numpy as np
import yaml
from panopticapi.utils import rgb2id
from PIL import Image
from pycocotools import mask as mask_util

from ..image_io import read_image
from .generated_shapes import SHAPES_CATEGORIES, SPLITS, _paths
from .mask_polygons import mask_to_polygon

__all__ = ["SHAPES_FORMATS", "write_shapes_formats"]

SHAPES_FORMATS = (
    "coco_polygons", "coco_rle", "coco_rle_uncompressed", "coco_panoptic", "sem_seg_ids",
    "sem_seg_palette", "labelme", "yolo",
)
_THINGS = [c for c in SHAPES_CATEGORIES if c["isthing"]]
_TASKS = {
    "coco_polygons": "instance", "coco_rle": "instance", "coco_rle_uncompressed": "instance",
    "coco_panoptic": "panoptic", "sem_seg_ids": "semantic", "sem_seg_palette": "semantic",
    "labelme": "panoptic", "yolo": "instance",
}
# Palette index of unlabeled pixels (255, as Pascal VOC) and its color.
_VOID_COLOR = [224, 224, 192]


def _segments(shapes_root, split):
    """Per image: (image entry, [(category dict, visible mask (H, W) bool)]), in segment order."""
    paths = _paths(shapes_root, split)
    with open(paths["panoptic_json"]) as f:
        panoptic = json.load(f)
    categories = {c["id"]: c for c in panoptic["categories"]}
    images = {i["id"]: i for i in panoptic["images"]}
    for ann in panoptic["annotations"]:
        ids = rgb2id(read_image(os.path.join(paths["panoptic_root"], ann["file_name"]), "RGB"))
        yield images[ann["image_id"]], [
            (categories[s["category_id"]], ids == s["id"]) for s in ann["segments_info"]
        ]


def _yaml(path, split_entries, **keys):
    with open(path, "w") as f:
        yaml.safe_dump(dict(keys, **split_entries), f, sort_keys=False)
    return path


def _coco_instances(shapes_root, split, encode):
    """A COCO instance json of the things, each mask written by ``encode(mask)``."""
    images, annotations = [], []
    for image, segments in _segments(shapes_root, split):
        images.append(image)
        for category, mask in segments:
            if not category["isthing"]:
                continue
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image["id"],
                "category_id": category["id"], "segmentation": encode(mask), "iscrowd": 0,
                "area": int(mask.sum()), "bbox": [int(v) for v in mask_util.toBbox(rle)],
            })
    return {"images": images, "annotations": annotations, "categories": _THINGS}


def _uncompressed_rle(mask):
    """COCO's uncompressed RLE: run lengths of 0s and 1s in column-major order, from 0s."""
    flat = mask.T.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def _write_coco(fmt, shapes_root, folder):
    encode = {"coco_polygons": lambda m: [mask_to_polygon(m)],
              "coco_rle_uncompressed": _uncompressed_rle}[fmt]
    entries = {}
    for split in SPLITS:
        json_path = os.path.join(folder, f"{split}.json")
        with open(json_path, "w") as f:
            json.dump(_coco_instances(shapes_root, split, encode), f)
        entries[split] = {"images": _paths(shapes_root, split)["image_root"],
                          "annotations": json_path}
    return entries


def _write_palette(shapes_root, folder):
    palette = [v for c in SHAPES_CATEGORIES for v in c["color"]]
    palette += [0] * (255 * 3 - len(palette)) + _VOID_COLOR
    entries = {}
    for split in SPLITS:
        paths = _paths(shapes_root, split)
        out = os.path.join(folder, split)
        os.makedirs(out, exist_ok=True)
        for name in sorted(os.listdir(paths["sem_seg_root"])):
            labels = Image.fromarray(read_image(os.path.join(paths["sem_seg_root"], name)))
            labels.putpalette(palette)
            labels.save(os.path.join(out, name))
        entries[split] = {"images": paths["image_root"], "annotations": out}
    return entries


def _write_labelme(shapes_root, folder):
    entries = {}
    for split in SPLITS:
        paths = _paths(shapes_root, split)
        out = os.path.join(folder, split)
        os.makedirs(out, exist_ok=True)
        for image, segments in _segments(shapes_root, split):
            stem = os.path.splitext(image["file_name"])[0]
            image_path = os.path.join(paths["image_root"], image["file_name"])
            shapes = [{
                "label": category["name"], "group_id": None, "shape_type": "polygon",
                "flags": {}, "description": "",
                "points": np.reshape(mask_to_polygon(mask), (-1, 2)).tolist(),
            } for category, mask in segments]
            with open(os.path.join(out, stem + ".json"), "w") as f:
                json.dump({
                    "version": "5.4.1", "flags": {}, "shapes": shapes,
                    "imagePath": os.path.relpath(image_path, out), "imageData": None,
                    "imageHeight": image["height"], "imageWidth": image["width"],
                }, f)
        entries[split] = {"images": paths["image_root"], "annotations": out}
    return entries


def _write_yolo(shapes_root, folder):
    thing_index = {c["id"]: i for i, c in enumerate(_THINGS)}
    entries = {}
    for split in SPLITS:
        paths = _paths(shapes_root, split)
        out = os.path.join(folder, "labels", split)
        os.makedirs(out, exist_ok=True)
        for image, segments in _segments(shapes_root, split):
            size = np.array([image["width"], image["height"]])
            lines = []
            for category, mask in segments:
                if category["isthing"]:
                    points = np.reshape(mask_to_polygon(mask), (-1, 2)) / size
                    lines.append(" ".join([str(thing_index[category["id"]])]
                                          + [f"{v:.6f}" for v in points.ravel()]))
            stem = os.path.splitext(image["file_name"])[0]
            with open(os.path.join(out, stem + ".txt"), "w") as f:
                f.write("\n".join(lines) + ("\n" if lines else ""))
        entries[split] = {"images": paths["image_root"], "annotations": out}
    with open(os.path.join(folder, "data.yaml"), "w") as f:
        yaml.safe_dump({"names": {i: c["name"] for i, c in enumerate(_THINGS)}}, f)
    return entries


def _generated_entries(fmt, shapes_root):
    """Split entries of the formats the generator writes itself."""
    entries = {}
    for split in SPLITS:
        paths = _paths(shapes_root, split)
        annotations = {"coco_rle": paths["instances_json"],
                       "coco_panoptic": paths["panoptic_json"],
                       "sem_seg_ids": paths["sem_seg_root"]}[fmt]
        entries[split] = {"images": paths["image_root"], "annotations": annotations}
        if fmt == "coco_panoptic":
            entries[split]["panoptic_root"] = paths["panoptic_root"]
    return entries


def write_shapes_formats(shapes_root, output, formats=SHAPES_FORMATS):
    """
    Write the generated shapes dataset under ``shapes_root`` (see
    :func:`.generated_shapes.generate_shapes_dataset`) in ``formats`` under ``output``.

    Returns:
        dict: format -> path of its dataset YAML (``output/<format>/<format>.yaml``).
    """
    written = {}
    for fmt in formats:
        if fmt not in SHAPES_FORMATS:
            raise ValueError(f"Unknown format {fmt!r}; the formats are {SHAPES_FORMATS}")
        folder = os.path.abspath(os.path.join(output, fmt))
        os.makedirs(folder, exist_ok=True)
        if fmt in ("coco_polygons", "coco_rle_uncompressed"):
            entries = _write_coco(fmt, shapes_root, folder)
        elif fmt == "sem_seg_palette":
            entries = _write_palette(shapes_root, folder)
        elif fmt == "labelme":
            entries = _write_labelme(shapes_root, folder)
        elif fmt == "yolo":
            entries = _write_yolo(shapes_root, folder)
        else:
            entries = _generated_entries(fmt, shapes_root)
        keys = {"name": f"shapes_{fmt}", "task": _TASKS[fmt]}
        if fmt.startswith("sem_seg"):
            keys["classes"] = [{"name": c["name"], "color": c["color"]}
                               for c in SHAPES_CATEGORIES]
        elif fmt == "labelme":
            keys["classes"] = [{"name": c["name"], "color": c["color"],
                                "isthing": bool(c["isthing"])} for c in SHAPES_CATEGORIES]
        elif fmt == "yolo":
            keys["classes"] = "data.yaml"
        relative = {s: {k: os.path.relpath(v, folder) for k, v in e.items()}
                    for s, e in entries.items()}
        written[fmt] = _yaml(os.path.join(folder, f"{fmt}.yaml"), relative, **keys)
    return written
