"""
Reader of LabelMe annotation files (the json that the LabelMe tool saves next to each image).

Each json holds ``imagePath`` (relative to the json), ``imageHeight``, ``imageWidth`` and
``shapes``; a shape has a ``label``, ``points`` in pixels, a ``shape_type`` and an optional
``group_id``. Region shapes become masks: "polygon" (at least 3 points), "rectangle" (2
corners), "circle" (center and a point on the circle; a polygon of one vertex per 2 pixels of
circumference, at least 16) and "mask" (a base64 PNG placed at the first point). Shapes of the
same label and ``group_id`` form one object (LabelMe's convention); a shape without
``group_id`` is one object. Lines and points are not regions: they are defects.

The format is read here, not with the ``labelme`` package, which brings Qt for its GUI; only
the json is needed.
"""
import base64
import io
import math
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from .coco import read_json
from .folders import IMAGE_EXTENSIONS, files_by_stem
from .samples import Defect, Sample, SegmentObject

__all__ = ["read_labelme", "labelme_labels"]


def labelme_labels(folder):
    """The sorted set of shape labels of the LabelMe files under ``folder``."""
    labels = set()
    for path in files_by_stem(folder, (".json",)).values():
        try:
            data = read_json(path)
        except ValueError:
            continue  # reported by the check
        labels.update(s.get("label") for s in data.get("shapes", []) if s.get("label"))
    return sorted(labels)


def _image_path(json_path, data, split, stem):
    """
    The image of a LabelMe file: ``imagePath`` relative to the json, else a file of that name
    or of the json's name in the image folder; the first candidate when none exists.
    """
    image_path = (data.get("imagePath") or "").replace("\\", "/")  # saved on Windows
    candidates = []
    if image_path:
        candidates.append(os.path.normpath(os.path.join(os.path.dirname(json_path), image_path)))
        candidates.append(os.path.join(split.images, os.path.basename(image_path)))
    candidates += [os.path.join(split.images, stem + ext) for ext in IMAGE_EXTENSIONS]
    return next((c for c in candidates if os.path.isfile(c)), candidates[0])


def _circle(points):
    (cx, cy), (px, py) = points[:2]
    radius = math.hypot(px - cx, py - cy)
    n = max(16, int(math.pi * radius))
    angles = np.arange(n) * 2 * math.pi / n
    return np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)


def _mask_rle(shape, height, width):
    """A "mask" shape (a PNG of the shape's box, at its first point) as a full-image RLE."""
    bitmap = np.asarray(Image.open(io.BytesIO(base64.b64decode(shape["mask"]))).convert("L")) > 0
    x0, y0 = (int(round(v)) for v in shape["points"][0])
    full = np.zeros((height, width), np.uint8, order="F")
    h, w = bitmap.shape
    ys, xs = slice(max(y0, 0), min(y0 + h, height)), slice(max(x0, 0), min(x0 + w, width))
    full[ys, xs] = bitmap[ys.start - y0: ys.stop - y0, xs.start - x0: xs.stop - x0]
    rle = mask_util.encode(full)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle, (x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height)


def _shape_region(shape, height, width):
    """
    A shape's region: ("polygon", [x1, y1, ...]) or ("rle", rle dict), or ("error", (kind,
    message)) for shapes that are no region.
    """
    kind = shape.get("shape_type") or "polygon"
    points = shape.get("points") or []
    if kind == "polygon":
        return "polygon", [float(v) for p in points for v in p[:2]]
    if kind == "rectangle" and len(points) == 2:
        (x0, y0), (x1, y1) = points
        return "polygon", [x0, y0, x1, y0, x1, y1, x0, y1]
    if kind == "circle" and len(points) == 2:
        return "polygon", _circle(points).ravel().tolist()
    if kind == "mask" and shape.get("mask") and points:
        if height is None or width is None:
            return "error", ("annotation_unreadable",
                             "a mask shape needs imageHeight and imageWidth in the file")
        rle, outside = _mask_rle(shape, height, width)
        if outside:
            return "error", ("outside_image", "the mask's box reaches outside the image")
        return "rle", rle
    return "error", ("annotation_unreadable" if kind not in ("polygon", "rectangle", "circle")
                     else "too_few_points",
                     f"shape_type {kind!r} with {len(points)} points is not a region "
                     "(polygon: 3 or more points, rectangle / circle: 2, or mask)")


def read_labelme(split, categories):
    """
    Read the LabelMe json files under ``split.annotations``.

    Returns:
        (list[Sample], list[Defect]): one sample per json file, its objects in file order.
    """
    by_name = {c.name: i for i, c in enumerate(categories)}
    samples, defects, images = [], [], {}
    for stem, path in files_by_stem(split.annotations, (".json",)).items():
        try:
            data = read_json(path)
            if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
                raise ValueError(f"{path} has no 'shapes' list: it is not a LabelMe file")
        except ValueError as e:
            defects.append(Defect("annotation_unreadable", path, "file", str(e)))
            continue
        image = _image_path(path, data, split, stem)
        if image in images:
            defects.append(Defect("duplicate_id", path, "imagePath",
                                  f"{image} is also annotated by {images[image]}", image))
            continue
        images[image] = path
        sample = Sample(file_name=image, image_id=stem, source=path,
                        height=data.get("imageHeight"), width=data.get("imageWidth"), objects=[])
        samples.append(sample)
        groups = {}
        for index, shape in enumerate(data["shapes"]):
            record = f"shape {index} (label {shape.get('label')!r})"
            category = by_name.get(shape.get("label"))
            if category is None:
                defects.append(Defect("unknown_category", path, record,
                                      "label is not a class of the dataset file", image))
                continue
            kind, region = _shape_region(shape, sample.height, sample.width)
            if kind == "error":
                defects.append(Defect(region[0], path, record, region[1], image))
                continue
            group = shape.get("group_id")
            key = (category, group) if group is not None else ("shape", index)
            if key in groups:
                target = groups[key]
                if kind == "rle" or not isinstance(target.segmentation, list):
                    defects.append(Defect("annotation_unreadable", path, record,
                                          "a mask shape cannot share a group_id", image))
                    continue
                target.segmentation.append(region)
                continue
            obj = SegmentObject(category=category, record=record,
                                segmentation=[region] if kind == "polygon" else region)
            groups[key] = obj
            sample.objects.append(obj)
    return samples, defects
