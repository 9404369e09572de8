"""
Checked samples of a dataset file -> Detectron2 dataset dicts of the task, and the files the
task's evaluators read (derived once, written beside the dataset file).

Per task, the dicts are those of the built-in datasets, read by the existing mappers:

* instance: "file_name", "image_id", "height", "width", "annotations" (polygons or compressed
  RLE "segmentation", "bbox" XYWH_ABS of the mask, contiguous "category_id", "iscrowd"), as
  Detectron2's ``load_coco_json``; derived: a COCO instance json (``instances.json``) for
  COCOEvaluator.
* panoptic: "pan_seg_file_name", "segments_info" (contiguous "category_id", "isthing"),
  "sem_seg_file_name", as :func:`~.catalog.load_panoptic_json`; derived: the panoptic json
  (and PNGs, for vector formats), semantic PNGs for mIoU and a COCO instance json of the things
  for mask AP.
* semantic: "sem_seg_file_name" (the label PNG, or a derived one for other formats).

Vector objects become panoptic / semantic maps by painting: stuff first, then things, each in
file order (later ones on top); unpainted pixels are void (panoptic id 0, the ignore label), or
of the class "_background_" when the dataset has one (LabelMe's convention). Regions to ignore
(LabelMe's "__ignore__") are void on top of everything; for the instance task, and in the COCO
json of the things, they are crowd annotations of every thing class: Detectron2's mappers train
on no crowd annotation, and COCO's evaluation ignores the detections that fall in one.
"""
import json
import os

import numpy as np
from detectron2.structures import BoxMode
from panopticapi.utils import id2rgb, rgb2id
from PIL import Image
from pycocotools import mask as mask_util

from ..image_io import read_image
from .dataset_file import BACKGROUND_CLASS_NAME

__all__ = ["build_records"]


def _compressed(segmentation, height, width):
    """Polygons stay polygons; an RLE (compressed or not) becomes a compressed one, str counts."""
    if isinstance(segmentation, list):
        return segmentation
    if isinstance(segmentation["counts"], list):
        segmentation = mask_util.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    return {"size": [height, width],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _rle(segmentation, height, width):
    """A compressed RLE of polygons or an RLE."""
    if isinstance(segmentation, list):
        return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_util.frPyObjects(segmentation, height, width)
    if isinstance(segmentation["counts"], str):
        return dict(segmentation, counts=segmentation["counts"].encode("ascii"))
    return segmentation


def _mask_rle(mask):
    """(H, W) bool -> compressed RLE with str counts."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _annotation(segmentation, category, iscrowd, height, width):
    rle = _rle(segmentation, height, width)
    return {
        "segmentation": _compressed(segmentation, height, width),
        "bbox": [float(v) for v in mask_util.toBbox(rle)],
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": category,
        "iscrowd": int(iscrowd),
        "area": float(mask_util.area(rle)),
    }


def _panoptic_map(sample, categories):
    """
    (pan_ids (H, W) int32, segments) of a sample: its PNG's ids, or its objects painted (stuff
    first, then things, in file order; stuff objects of one class are one segment).
    segments: dicts with "id", contiguous "category_id", "isthing", "iscrowd".
    """
    if sample.pan_seg_file is not None:
        ids = rgb2id(read_image(sample.pan_seg_file, format="RGB")).astype(np.int32)
        return ids, [dict(s) for s in sample.segments]
    height, width = sample.height, sample.width
    ids = np.zeros((height, width), np.int32)
    segments, stuff_ids = [], {}
    ordered = sorted(sample.objects, key=lambda o: categories[o.category].isthing)
    for obj in ordered:
        isthing = categories[obj.category].isthing
        mask = mask_util.decode(_rle(obj.segmentation, height, width)).astype(bool)
        if not isthing and obj.category in stuff_ids:
            ids[mask] = stuff_ids[obj.category]
            continue
        segment_id = len(segments) + 1
        segments.append({"id": segment_id, "category_id": obj.category, "isthing": isthing,
                         "iscrowd": int(obj.iscrowd)})
        if not isthing:
            stuff_ids[obj.category] = segment_id
        ids[mask] = segment_id
    background = [i for i, c in enumerate(categories) if c.name == BACKGROUND_CLASS_NAME]
    if background and (ids == 0).any():
        if background[0] not in stuff_ids:
            segments.append({"id": len(segments) + 1, "category_id": background[0],
                             "isthing": categories[background[0]].isthing, "iscrowd": 0})
        ids[ids == 0] = stuff_ids.get(background[0], len(segments))
    for region in sample.ignore_regions:
        ids[mask_util.decode(_rle(region.segmentation, height, width)).astype(bool)] = 0
    present = set(np.unique(ids).tolist())
    return ids, [s for s in segments if s["id"] in present]


def _ignore_annotations(sample, categories, height, width):
    """Crowd annotations of the sample's regions to ignore, one per thing class."""
    return [_annotation(region.segmentation, index, 1, height, width)
            for region in sample.ignore_regions
            for index, c in enumerate(categories) if c.isthing]


def _semantic(ids, segments, ignore_label):
    labels = np.full(ids.shape, ignore_label, np.uint8 if ignore_label < 256 else np.uint16)
    for segment in segments:
        labels[ids == segment["id"]] = segment["category_id"]
    return labels


def _file_stem(sample, index):
    """A unique, readable file name stem for a sample's derived files."""
    stem = os.path.splitext(os.path.basename(sample.file_name))[0]
    return f"{index:06d}_{stem}"


class _Writer:
    """Collects a split's derived files under ``folder`` (written by :meth:`finish`)."""

    def __init__(self, folder, categories):
        self.folder = folder
        self.categories = categories
        self.images, self.instances, self.panoptic = [], [], []

    def path(self, *parts):
        path = os.path.join(self.folder, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def add_image(self, record):
        self.images.append({"id": record["image_id"], "file_name": record["file_name"],
                            "height": record["height"], "width": record["width"]})

    def add_instances(self, image_id, annotations):
        for ann in annotations:
            self.instances.append({
                "id": len(self.instances) + 1, "image_id": image_id,
                "category_id": self.categories[ann["category_id"]].id,
                "segmentation": ann["segmentation"], "area": ann["area"], "bbox": ann["bbox"],
                "iscrowd": ann["iscrowd"],
            })

    def write_json(self, name, annotations, things_only):
        categories = [{"id": c.id, "name": c.name, "isthing": int(c.isthing), "color": c.color}
                      for c in self.categories if c.isthing or not things_only]
        with open(self.path(name), "w") as f:
            json.dump({"images": self.images, "annotations": annotations,
                       "categories": categories}, f)


def _panoptic_record(record, sample, index, ids, segments, writer, ignore_label):
    """Fill a panoptic record; write its PNG (when painted) and semantic PNG."""
    stem = _file_stem(sample, index)
    if sample.pan_seg_file is None:
        pan_file = writer.path("panoptic", stem + ".png")
        Image.fromarray(id2rgb(ids)).save(pan_file)
    else:
        pan_file = sample.pan_seg_file
    sem_file = writer.path("semantic", stem + ".png")
    Image.fromarray(_semantic(ids, segments, ignore_label)).save(sem_file)
    infos = []
    for segment in segments:
        mask = ids == segment["id"]
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
               int(ys.max() - ys.min() + 1)]
        infos.append(dict(segment, area=int(mask.sum()), bbox=box))
    record.update(pan_seg_file_name=pan_file, segments_info=infos, sem_seg_file_name=sem_file)
    writer.panoptic.append({
        "image_id": record["image_id"], "file_name": os.path.relpath(pan_file, writer.folder)
        if sample.pan_seg_file is None else pan_file,
        "segments_info": [dict(s, category_id=writer.categories[s["category_id"]].id)
                          for s in infos],
    })
    things = [
        dict(_annotation(_mask_rle(ids == s["id"]), s["category_id"], s["iscrowd"],
                         *ids.shape))
        for s in infos if s["isthing"]
    ]
    things += _ignore_annotations(sample, writer.categories, *ids.shape)
    writer.add_instances(record["image_id"], things)


def build_records(samples, task, categories, folder, ignore_label):
    """
    Detectron2 dataset dicts of the checked ``samples`` for ``task``, writing the derived
    files under ``folder`` (see the module docstring).

    Returns:
        list[dict]: the dicts. The metadata names the derived files by the same layout
        (register_dataset_file.py, ``_derived_paths``).
    """
    writer = _Writer(folder, categories)
    numeric = all(isinstance(s.image_id, int) for s in samples)
    records = []
    for index, sample in enumerate(samples):
        record = {"file_name": sample.file_name, "height": sample.height, "width": sample.width,
                  "image_id": sample.image_id if numeric else index + 1}
        records.append(record)
        writer.add_image(record)
        if task == "semantic":
            if sample.sem_seg_file is not None:
                record["sem_seg_file_name"] = sample.sem_seg_file
                continue
            ids, segments = _panoptic_map(sample, categories)
            path = writer.path("semantic", _file_stem(sample, index) + ".png")
            Image.fromarray(_semantic(ids, segments, ignore_label)).save(path)
            record["sem_seg_file_name"] = path
        elif task == "panoptic":
            ids, segments = _panoptic_map(sample, categories)
            _panoptic_record(record, sample, index, ids, segments, writer, ignore_label)
        elif sample.objects is not None:
            record["annotations"] = [
                _annotation(o.segmentation, o.category, o.iscrowd, sample.height, sample.width)
                for o in sample.objects
            ] + _ignore_annotations(sample, categories, sample.height, sample.width)
            writer.add_instances(record["image_id"], record["annotations"])
        else:  # instance task from a panoptic PNG: its thing segments
            ids, segments = _panoptic_map(sample, categories)
            record["annotations"] = [
                _annotation(_mask_rle(ids == s["id"]), s["category_id"], s["iscrowd"],
                            *ids.shape)
                for s in segments if s["isthing"]
            ]
            writer.add_instances(record["image_id"], record["annotations"])
    if task in ("instance", "panoptic"):
        writer.write_json("instances.json", writer.instances, things_only=True)
    if task == "panoptic":
        writer.write_json("panoptic.json", writer.panoptic, things_only=False)
    return records
