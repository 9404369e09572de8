"""
Annotation formats of a dataset file (see :mod:`..dataset_file`): which format a split is in,
the dataset's classes, and reading a split into :class:`~.samples.Sample` records.
"""
import os
from collections import Counter
from dataclasses import replace

from detectron2.utils.colormap import colormap

from ..dataset_file import BACKGROUND_CLASS_NAME, Category, DatasetFileError
from .coco import json_categories, read_coco_instances, read_coco_panoptic, read_json
from .labelme import labelme_labels, read_labelme
from .samples import DEFECT_KINDS, Defect, Sample, SegmentObject
from .sem_seg import read_sem_seg
from .yolo import read_yolo

__all__ = [
    "DEFECT_KINDS", "Defect", "Sample", "SegmentObject", "READERS", "detect_format",
    "resolve_categories", "read_split",
]

# format -> reader(split, categories) -> (samples, defects)
READERS = {
    "coco": read_coco_instances,
    "coco_panoptic": read_coco_panoptic,
    "sem_seg": read_sem_seg,
    "labelme": read_labelme,
    "yolo": read_yolo,
}
_FOLDER_FORMATS = {".json": "labelme", ".txt": "yolo", ".png": "sem_seg"}


def detect_format(dataset):
    """
    The format of the dataset's annotations: the file's ``format`` key, else detected from the
    train split (a COCO json with "segments_info": coco_panoptic, other COCO json: coco; a
    folder of .json: labelme, .txt: yolo, .png: sem_seg).
    """
    if dataset.format:
        return dataset.format
    path = dataset.splits["train"].annotations
    where = f"{dataset.path}: key 'train.annotations' ({path})"
    if os.path.isfile(path):
        data = read_json(path) if path.endswith(".json") else None
        if isinstance(data, dict) and isinstance(data.get("annotations"), list):
            annotations = data["annotations"]
            return "coco_panoptic" if annotations and "segments_info" in annotations[0] else "coco"
        raise DatasetFileError(f"{where}: not a COCO json; a file must be a COCO instance or "
                               "panoptic json, a folder holds LabelMe, YOLO or label PNG files")
    counts = Counter()
    for _, _, names in os.walk(path):
        counts.update(os.path.splitext(n)[1].lower() for n in names)
    found = [fmt for ext, fmt in _FOLDER_FORMATS.items() if counts[ext]]
    if len(found) != 1:
        holds = " and ".join(found) + " files" if found else "no .json, .txt or .png files"
        raise DatasetFileError(f"{where}: cannot tell the format (it holds {holds}); set key "
                               f"'format' to one of {sorted(READERS)}")
    return found[0]


def _grouping_categories(categories, data):
    """
    Names of COCO json categories that only group others (as in Roboflow's exports): the
    "supercategory" of another category, with no annotation or segment of their own.
    """
    used = set()
    for entry in data.get("annotations", []):
        used.add(entry.get("category_id"))
        used.update(s.get("category_id") for s in entry.get("segments_info", []))
    parents = {c.get("supercategory") for c in categories if c.get("supercategory") != c["name"]}
    return [c["name"] for c in categories if c["name"] in parents and c["id"] not in used]


def resolve_categories(dataset, fmt):
    """
    The dataset's classes in contiguous-id order, each with an id, a color and ``isthing``:
    from the file's ``classes``, completed by the annotations (COCO json categories, LabelMe
    labels), with ids 1, 2, ... and Detectron2's colormap where none is given. Left out: COCO
    categories that only group others, and for the instance task "_background_" (LabelMe).

    Returns:
        (list[Category], list[str]): the classes, and notes for the user on what was left out.

    Raises:
        DatasetFileError: naming the key, when the classes cannot be known or the panoptic
            task does not know which classes are things.
    """
    train = dataset.splits["train"].annotations
    notes = []
    if fmt in ("coco", "coco_panoptic"):
        data = read_json(train)
        json_classes = json_categories(train, data)
        by_name = {c["name"]: c for c in json_classes}
        named = dataset.classes
        if named is None:
            groups = _grouping_categories(json_classes, data)
            named = [Category(name=n) for n in by_name if n not in groups]
            if groups:
                notes.append(f"{train}: categories {groups} only group other categories "
                             "(their 'supercategory') and have no annotation: not classes")
        categories = []
        for c in named:
            source = by_name.get(c.name, {})
            isthing = c.isthing if c.isthing is not None else (
                bool(source["isthing"]) if "isthing" in source else None)
            categories.append(replace(c, id=c.id if c.id is not None else source.get("id"),
                                      color=c.color or source.get("color"), isthing=isthing))
    elif dataset.classes is not None:
        categories = [replace(c) for c in dataset.classes]
    elif fmt == "labelme":
        categories = [Category(name=label) for label in labelme_labels(train)]
        if not categories:
            raise DatasetFileError(f"{dataset.path}: key 'classes': the LabelMe files of the "
                                   "train split have no labels; list the classes")
    else:
        raise DatasetFileError(
            f"{dataset.path}: key 'classes': needed for format {fmt!r} (a list of names, a "
            "class count, or a names file such as YOLO's data.yaml)")

    if dataset.task == "instance" and any(c.name == BACKGROUND_CLASS_NAME for c in categories):
        categories = [c for c in categories if c.name != BACKGROUND_CLASS_NAME]
        notes.append(f"class {BACKGROUND_CLASS_NAME!r} left out: the instance task has no "
                     "background class")
    if not categories:
        raise DatasetFileError(f"{dataset.path}: key 'classes': the dataset has no class")
    if any(c.name == BACKGROUND_CLASS_NAME for c in categories):
        notes.append(f"class {BACKGROUND_CLASS_NAME!r} covers the pixels no object covers")
    used = {c.id for c in categories if c.id is not None}
    next_id, palette = 1, colormap(rgb=True, maximum=255).astype(int).tolist()
    for index, c in enumerate(categories):
        if c.id is None:
            while next_id in used:
                next_id += 1
            c.id = next_id
            used.add(next_id)
        if c.color is None:
            c.color = palette[index % len(palette)]
    _set_things(dataset, categories)
    if dataset.task == "semantic" and dataset.ignore_label < len(categories):
        raise DatasetFileError(
            f"{dataset.path}: key 'ignore_label': {dataset.ignore_label} is a class id (there "
            f"are {len(categories)} classes); use a value >= {len(categories)}, e.g. 255")
    return categories, notes


def _set_things(dataset, categories):
    names = [c.name for c in categories]
    if dataset.task == "instance":
        for c in categories:
            c.isthing = True
        return
    if dataset.things is not None:
        unknown = sorted(set(dataset.things) - set(names))
        if unknown:
            raise DatasetFileError(f"{dataset.path}: key 'things': {unknown} are not classes "
                                   f"(the classes are {names})")
        for c in categories:
            c.isthing = c.name in dataset.things
    if dataset.task == "panoptic" and any(c.isthing is None for c in categories):
        raise DatasetFileError(
            f"{dataset.path}: key 'things': the panoptic task needs to know which classes are "
            "things (objects counted one by one) and which are stuff: list the thing classes "
            "under 'things', or give 'isthing' for each entry of 'classes'")
    for c in categories:
        c.isthing = bool(c.isthing)


def read_split(dataset, split, fmt, categories):
    """
    ``READERS[fmt]`` on ``dataset.splits[split]``: (list[Sample], list[Defect]); crowd objects
    are single objects when the file says ``crowd_as_objects``.
    """
    entry = dataset.splits[split]
    if fmt != "coco" and fmt != "coco_panoptic" and not os.path.isdir(entry.annotations):
        raise DatasetFileError(f"{dataset.path}: key '{split}.annotations': format {fmt!r} "
                               f"reads a folder, and {entry.annotations} is a file")
    try:
        samples, defects = READERS[fmt](entry, categories)
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetFileError(f"{dataset.path}: key '{split}.annotations': {e}") from e
    if dataset.crowd_as_objects:
        for sample in samples:
            for obj in sample.objects or ():
                obj.iscrowd = 0
            for segment in sample.segments:
                segment["iscrowd"] = 0
    return samples, defects
