"""
Readers of the two COCO json formats: instance annotations (polygons, RLE, uncompressed RLE,
``iscrowd``) and panoptic annotations (json + PNGs in panopticapi's RGB id encoding).

The json is parsed here rather than by Detectron2's ``load_coco_json``, which asserts on
duplicate ids and drops invalid polygons with a count: the check must name each defective
record. Masks are decoded by pycocotools, as Detectron2 does.
"""
import json
import os

from .samples import Defect, Sample, SegmentObject

__all__ = ["read_json", "json_categories", "read_coco_instances", "read_coco_panoptic"]


def read_json(path):
    """The parsed json ``path``; a broken file raises ``ValueError`` naming it."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"Cannot read the annotation file {path}: {e}") from e


def json_categories(path, data=None):
    """The "categories" of a COCO json, sorted by id (dicts with at least "id" and "name")."""
    data = read_json(path) if data is None else data
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not categories:
        raise ValueError(f"{path} has no 'categories' list: it is not a COCO json")
    return sorted(categories, key=lambda c: c["id"])


def _category_index(path, data, categories):
    """json category id -> index in ``categories`` (matched by name)."""
    by_name = {c.name: i for i, c in enumerate(categories)}
    return {c["id"]: by_name[c["name"]] for c in json_categories(path, data)
            if c["name"] in by_name}


def _images(path, data, image_root, defects):
    """image id -> Sample from the json's "images"; duplicate ids and files are defects."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path} has no 'images' list: it is not a COCO json")
    samples, files = {}, {}
    for entry in data["images"]:
        image_id, file_name = entry.get("id"), os.path.join(image_root, entry["file_name"])
        sample = Sample(file_name=file_name, image_id=image_id, source=path,
                        height=entry.get("height"), width=entry.get("width"))
        for key, seen, what in ((image_id, samples, "image id"), (file_name, files, "image file")):
            if key in seen:
                for duplicate in (seen[key], sample):
                    defects.append(Defect(
                        "duplicate_id", path, f"{what} {key}",
                        f"{what} listed more than once in 'images'; give each image one entry",
                        duplicate.file_name))
        samples.setdefault(image_id, sample)
        files.setdefault(file_name, sample)
    return samples


def _sample_of(entry, samples, path, record, defects):
    """The sample of an annotation's image_id, or None and an "unknown_image" defect."""
    sample = samples.get(entry.get("image_id"))
    if sample is None:
        defects.append(Defect("unknown_image", path, record,
                              f"image_id {entry.get('image_id')} is not in 'images'"))
    return sample


def read_coco_instances(split, categories):
    """
    Read a COCO instance json.

    Args:
        split (Split): ``annotations`` is the json, ``images`` the folder its file names are in.
        categories (list[Category]): the dataset's classes; json categories are matched by name.

    Returns:
        (list[Sample], list[Defect]): one sample per json image with its ``objects``.
    """
    path = split.annotations
    data = read_json(path)
    defects = []
    samples = _images(path, data, split.images, defects)
    for sample in samples.values():
        sample.objects = []
    category_index = _category_index(path, data, categories)
    json_names = {c["id"]: c["name"] for c in json_categories(path, data)}
    seen_ids = {}
    for entry in data.get("annotations", []):
        record = f"annotation id {entry.get('id')}"
        sample = _sample_of(entry, samples, path, record, defects)
        if sample is None:
            continue
        if entry.get("id") in seen_ids:
            for key in (seen_ids[entry["id"]], sample.file_name):
                defects.append(Defect("duplicate_id", path, record,
                                      "annotation id used more than once", key))
        seen_ids[entry.get("id")] = sample.file_name
        category = category_index.get(entry.get("category_id"))
        if category is None:
            name = json_names.get(entry.get("category_id"))
            defects.append(Defect(
                "unknown_category", path, record,
                f"category_id {entry.get('category_id')}"
                + (f" ({name!r}) is not a class of the dataset file" if name else
                   " is not in 'categories'"), sample.file_name))
            continue
        segmentation = entry.get("segmentation")
        if not segmentation:
            box = entry.get("bbox")
            defects.append(
                Defect("box_only", path, record, f"a bbox {box} but no 'segmentation' (a box "
                       "annotation): draw its mask, or remove it from the json", sample.file_name)
                if box else
                Defect("empty_mask", path, record, "no 'segmentation': a mask is needed to train "
                       "on it", sample.file_name))
            continue
        sample.objects.append(SegmentObject(
            category=category, segmentation=segmentation, record=record,
            iscrowd=int(entry.get("iscrowd", 0)), box=entry.get("bbox")))
    return list(samples.values()), defects


def read_coco_panoptic(split, categories):
    """
    Read a COCO panoptic json; the PNGs are in ``split.panoptic_root`` (default: the json's
    path without ".json").

    Returns:
        (list[Sample], list[Defect]): one sample per json image, with ``pan_seg_file`` and
        ``segments`` (segments_info with contiguous "category_id" and "isthing").
    """
    path = split.annotations
    png_root = split.panoptic_root or os.path.splitext(path)[0]
    data = read_json(path)
    defects = []
    samples = _images(path, data, split.images, defects)
    category_index = _category_index(path, data, categories)
    annotated = set()
    for entry in data.get("annotations", []):
        record = f"annotation of image_id {entry.get('image_id')} ({entry.get('file_name')})"
        sample = _sample_of(entry, samples, path, record, defects)
        if sample is None:
            continue
        if sample.image_id in annotated:
            defects.append(Defect("duplicate_id", path, record,
                                  "image annotated more than once", sample.file_name))
        annotated.add(sample.image_id)
        sample.pan_seg_file = os.path.join(png_root, entry["file_name"])
        seen = set()
        for segment in entry.get("segments_info", []):
            where = f"{record}, segment id {segment.get('id')}"
            if segment.get("id") in seen:
                defects.append(Defect("duplicate_id", path, where,
                                      "segment id used twice in the image", sample.file_name))
            seen.add(segment.get("id"))
            category = category_index.get(segment.get("category_id"))
            if category is None:
                defects.append(Defect(
                    "unknown_category", path, where,
                    f"category_id {segment.get('category_id')} is not a class of the dataset",
                    sample.file_name))
                continue
            sample.segments.append({
                "id": segment["id"], "category_id": category,
                "iscrowd": int(segment.get("iscrowd", 0)),
                "isthing": bool(categories[category].isthing),
            })
    for sample in samples.values():
        if sample.image_id not in annotated:
            defects.append(Defect("annotation_missing", path, f"image id {sample.image_id}",
                                  "the image has no entry in 'annotations'", sample.file_name))
    return list(samples.values()), defects
