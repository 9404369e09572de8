"""
Reader of LabelMe annotation files (the json that the LabelMe tool saves next to each image).

Each json holds ``imagePath`` (relative to the json), ``imageHeight``, ``imageWidth``,
``shapes`` and, unless LabelMe saved it without, ``imageData`` (the image file, base64); a
shape has a ``label``, ``points`` in pixels, a ``shape_type`` and an optional ``group_id``.
Region shapes become masks: "polygon" (at least 3 points), "rectangle" (2 corners), "circle"
(center and a point on the circle; a polygon of one vertex per 2 pixels of circumference, at
least 16) and "mask" (a base64 PNG placed at the first point). Shapes of the same label and
``group_id`` form one object (LabelMe's convention); a shape without ``group_id`` is one
object. Lines and points are not regions: they are defects.

Older LabelMe files have no image size (it is read from the image), no ``shape_type``
(polygons) and no ``group_id``: their objects were named by label suffixes, "person-1",
"person-2", which LabelMe's converters of the time read as class "person"; so are they here
when the full label is no class (shapes of one suffixed label form one object).

LabelMe's conventions of its labels file are kept: shapes labeled "__ignore__" are regions to
ignore (:attr:`~.samples.Sample.ignore_regions`), never a class. The image is the file
``imagePath`` names, else the one of the json's name in the image folder, else the image the
json embeds: written once to the split's ``embedded_images`` folder and rewritten only when
the json changes.

The format is read here, not with the ``labelme`` package, which brings Qt for its GUI; only
the json is needed.
"""
import base64
import binascii
import io
import math
import os
import re

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_util

from ..dataset_file import IGNORE_LABEL_NAME
from .coco import read_json
from .folders import IMAGE_EXTENSIONS, files_by_stem
from .samples import Defect, Sample, SegmentObject

__all__ = ["read_labelme", "labelme_labels"]

# An object label of older LabelMe files: "<class>-<number>".
_SUFFIXED_LABEL = re.compile(r"^(.+)-(\d+)$")


def _is_old_file(shapes):
    """A file of LabelMe before ``group_id`` (its objects are named by label suffixes)."""
    return not any("group_id" in shape for shape in shapes)


def labelme_labels(folder):
    """
    The sorted class names of the LabelMe files under ``folder``: their shape labels, without
    "__ignore__", and without the object suffix ("person-2" -> "person") in older files.
    """
    labels = set()
    for path in files_by_stem(folder, (".json",)).values():
        try:
            data = read_json(path)
        except ValueError:
            continue  # reported by the check
        shapes = data.get("shapes", []) if isinstance(data, dict) else []
        shapes = [s for s in shapes if isinstance(s, dict) and isinstance(s.get("label"), str)]
        old = _is_old_file(shapes)
        for shape in shapes:
            label = shape["label"]
            match = _SUFFIXED_LABEL.match(label) if old else None
            if label and label != IGNORE_LABEL_NAME:
                labels.add(match.group(1) if match else label)
    return sorted(labels)


def _class_of(label, by_name):
    """
    (class index, object label) of a shape label: the class of that name (object label None),
    or for an old-style "person-2" the class "person" and object "person-2"; (None, None).
    """
    if label in by_name:
        return by_name[label], None
    match = _SUFFIXED_LABEL.match(label) if isinstance(label, str) else None
    if match and match.group(1) in by_name:
        return by_name[match.group(1)], label
    return None, None


def _image_file(json_path, data, split, stem):
    """
    The image file of a LabelMe file: ``imagePath`` relative to the json, else a file of that
    name or of the json's name in the image folder. Returns (path or None, the first candidate).
    """
    image_path = data.get("imagePath")
    image_path = image_path.replace("\\", "/") if isinstance(image_path, str) else ""
    candidates = []
    if image_path:  # saved on Windows: backslashes
        candidates.append(os.path.normpath(os.path.join(os.path.dirname(json_path), image_path)))
        candidates.append(os.path.join(split.images, os.path.basename(image_path)))
    candidates += [os.path.join(split.images, stem + ext) for ext in IMAGE_EXTENSIONS]
    # Some files name themselves in imagePath (their image is embedded).
    candidates = [c for c in candidates if not c.lower().endswith(".json")]
    return next((c for c in candidates if os.path.isfile(c)), None), candidates[0]


# PIL format -> file extension of an embedded image.
_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif",
               "WEBP": ".webp"}


def _embedded_image(json_path, data, folder, stem):
    """
    The image a LabelMe file embeds (base64 ``imageData``), written to ``folder`` as
    ``<stem>.<ext>`` with the json's modification time, unless such a copy is there. Returns
    (path, None), (None, why the data is no image), or (None, None) when it embeds no image.
    """
    encoded = data.get("imageData")
    if not encoded:
        return None, None
    try:
        raw = base64.b64decode(encoded, validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            kind = image.format
    except (TypeError, ValueError, binascii.Error, UnidentifiedImageError) as e:
        return None, f"imageData is not a base64 image file: {e}"
    path = os.path.join(folder, stem + _EXTENSIONS.get(kind, "." + kind.lower()))
    modified = os.stat(json_path).st_mtime_ns
    if (os.path.isfile(path) and os.path.getsize(path) == len(raw)
            and os.stat(path).st_mtime_ns == modified):
        return path, None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            f.write(raw)
        os.utime(path + ".tmp", ns=(modified, modified))
        os.replace(path + ".tmp", path)
    except OSError as e:
        raise OSError(f"Cannot write the image embedded in {json_path} to {path} ({e}): the "
                      "folder of the dataset file must be writable") from e
    return path, None


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
        image, missing = _image_file(path, data, split, stem)
        embedded = False
        if image is None:
            image, error = _embedded_image(path, data, split.embedded_images, stem)
            if error is not None:
                defects.append(Defect("image_unreadable", path, "imageData", error, missing))
                continue
            embedded = image is not None
            image = image or missing
        if image in images:
            defects.append(Defect("duplicate_id", path, "imagePath",
                                  f"{image} is also annotated by {images[image]}", image))
            continue
        images[image] = path
        sample = Sample(file_name=image, image_id=stem, source=path, objects=[],
                        height=data.get("imageHeight"), width=data.get("imageWidth"),
                        embedded_image=embedded)
        samples.append(sample)
        defects += _read_shapes(data["shapes"], sample, by_name)
    return samples, defects


def _read_shapes(shapes, sample, by_name):
    """Add the objects and ignore regions of ``shapes`` to ``sample``; return the defects."""
    defects, groups = [], {}
    for index, shape in enumerate(shapes):
        shape = shape if isinstance(shape, dict) else {}
        label = shape.get("label")
        record = f"shape {index} (label {label!r})"
        category, instance = _class_of(label, by_name)
        if category is None and label != IGNORE_LABEL_NAME:
            defects.append(Defect("unknown_category", sample.source, record,
                                  "label is not a class of the dataset file", sample.file_name))
            continue
        kind, region = _shape_region(shape, sample.height, sample.width)
        if kind == "error":
            defects.append(Defect(region[0], sample.source, record, region[1], sample.file_name))
            continue
        segmentation = [region] if kind == "polygon" else region
        if label == IGNORE_LABEL_NAME:
            sample.ignore_regions.append(SegmentObject(None, segmentation, record))
            continue
        group = shape.get("group_id")
        key = ("shape", index) if group is None and instance is None else (
            category, instance, group)
        if key in groups:
            target = groups[key]
            if kind == "rle" or not isinstance(target.segmentation, list):
                defects.append(Defect("annotation_unreadable", sample.source, record,
                                      "a mask shape cannot share a group_id", sample.file_name))
                continue
            target.segmentation.append(region)
            continue
        groups[key] = SegmentObject(category=category, segmentation=segmentation, record=record)
        sample.objects.append(groups[key])
    return defects
