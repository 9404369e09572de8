"""
A dataset described by a file: the schema of the dataset YAML and its validation.

A dataset YAML names the task, the splits (image folder + annotations) and, optionally, the
classes. Relative paths are relative to the YAML's folder (or to ``root``)::

    name: my_data              # optional (default: the file name); splits register as
                               # <name>_train, <name>_val, <name>_test
    task: instance             # instance | panoptic | semantic
    format: coco               # optional, detected from the annotations: coco | coco_panoptic |
                               # sem_seg | labelme | yolo
    classes:                   # optional for coco, coco_panoptic, yolo, labelme (see below)
      - circle                 # a name, or a mapping with name and optional color, isthing
      - {name: sky, color: [135, 206, 235], isthing: false}
    things: [circle]           # panoptic: the thing classes, when neither classes nor the
                               # annotations (coco_panoptic "isthing") say it
    ignore_label: 255          # semantic label PNGs: value of unlabeled pixels (default 255)
    crowd_as_objects: false    # true: read COCO "iscrowd": 1 annotations as single objects
    root: /data/my_data        # optional base of the relative paths
    train:
      images: images/train     # folder of the images (subfolders allowed)
      annotations: train.json  # a file or a folder, by format (below)
    val:
      images: images/val
      annotations: val.json
    test: ...                  # optional, same keys

Formats and what ``annotations`` names:

* ``coco``: a COCO instance json (polygons, RLE, uncompressed RLE, ``iscrowd``); classes are
  its ``categories`` (a category that is only the ``supercategory`` of others and has no
  annotation, as in Roboflow's exports, is no class). Crowd annotations (``iscrowd`` 1) are
  regions that training leaves out and the evaluation ignores, as in Detectron2;
  ``crowd_as_objects: true`` reads them as objects (CVAT and pycococreator mark every RLE mask
  ``iscrowd`` 1). An object with a ``bbox`` but no ``segmentation`` is a defect ("box_only"):
  left out, it would teach the model that the object is background.
* ``coco_panoptic``: a COCO panoptic json; its PNGs are in the split's ``panoptic_root``
  (default: the json's path without ``.json``, COCO's layout); classes are its ``categories``
  (with ``isthing``).
* ``sem_seg``: a folder of label PNGs named as the images (same relative path, ``.png``):
  single-channel class ids, or palette PNGs (Pascal VOC) whose indices are the ids;
  ``ignore_label`` elsewhere. ``classes`` is required: a list of names, or a count.
* ``labelme``: a folder of LabelMe json files (one per image: ``shapes`` of type polygon,
  rectangle, circle or mask; shapes of one label and ``group_id`` form one object, a shape
  without ``group_id`` is one object; labels "person-1", "person-2" of older LabelMe files are
  objects of class "person"). The image is ``imagePath`` next to the json, else the file of the
  same name in ``images``, else the image the json embeds (``imageData``), written once to
  ``.mask2former/<name>/embedded_images/``. Shapes labeled "__ignore__" are regions to ignore
  (crowd regions of every class for the instance task, the ignore label and void in semantic
  and panoptic maps); a class "_background_" covers the pixels no shape covers (semantic and
  panoptic tasks; the instance task has no background class). Classes default to the sorted
  labels of the train split; ``classes: labels.txt`` reads LabelMe's labels file (its
  "__ignore__" line is no class).
* ``yolo``: a folder of YOLO segmentation txt files (``class x1 y1 x2 y2 ...``, coordinates
  normalized to [0, 1]) named as the images; ``annotations`` defaults to Ultralytics' labels
  folder, the images path with its last "images" folder replaced by "labels"
  (``images/train`` -> ``labels/train``, ``train/images`` -> ``train/labels``); ``classes`` is a
  list, or the path of the YOLO ``data.yaml`` (its ``names``) or of a text file with one name
  per line. A YOLO ``data.yaml`` is itself a dataset file (see :func:`load_dataset_file`).

``classes`` may also be the path of such a names file for any format. Every task reads every
format except ``sem_seg`` (semantic only): objects of vector formats are painted stuff first,
then things in file order (later ones on top) to make panoptic or semantic maps.

:func:`load_dataset_file` reads and validates a YAML and returns a :class:`DatasetFile`;
errors name the file and the key. Files derived from the dataset are kept in
``.mask2former/<name>/`` beside it.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import yaml

__all__ = [
    "TASKS",
    "FORMATS",
    "SPLITS",
    "Category",
    "Split",
    "DatasetFile",
    "DatasetFileError",
    "load_dataset_file",
]

TASKS = ("instance", "panoptic", "semantic")
FORMATS = ("coco", "coco_panoptic", "sem_seg", "labelme", "yolo")
SPLITS = ("train", "val", "test")
_TOP_KEYS = {
    "name", "task", "format", "classes", "things", "ignore_label", "crowd_as_objects", "root",
} | set(SPLITS)
# LabelMe's label of regions to ignore; a line of its labels.txt, never a class.
IGNORE_LABEL_NAME = "__ignore__"
# LabelMe's background class (labels.txt): the pixels no shape covers; no class of instances.
BACKGROUND_CLASS_NAME = "_background_"
_SPLIT_KEYS = {"images", "annotations", "panoptic_root"}


class DatasetFileError(ValueError):
    """A dataset YAML that does not follow the schema; the message names the file and key."""


@dataclass
class Category:
    """One class: ``name``, its id in the annotation files, ``color`` (RGB), ``isthing``."""

    name: str
    id: Optional[int] = None
    color: Optional[List[int]] = None
    isthing: Optional[bool] = None


@dataclass
class Split:
    """
    One split: the image folder, the annotations (file or folder), the panoptic PNGs, and the
    folder where images embedded in annotation files (LabelMe's imageData) are written.
    """

    name: str
    images: str
    annotations: str
    panoptic_root: Optional[str] = None
    embedded_images: Optional[str] = None


@dataclass
class DatasetFile:
    """
    A validated dataset YAML. ``classes`` is None when the annotations give them (see
    :mod:`.dataset_file`); ``things`` None when not given; paths are absolute. ``notes``: what
    the file names and is not read, for the user.
    """

    path: str
    name: str
    task: str
    format: Optional[str]
    splits: Dict[str, Split]
    classes: Optional[List[Category]] = None
    things: Optional[List[str]] = None
    ignore_label: int = 255
    names_file: Optional[str] = None
    crowd_as_objects: bool = False
    notes: List[str] = field(default_factory=list)

    def split_name(self, split):
        """Registered name of ``split``: ``<name>_<split>``."""
        return f"{self.name}_{split}"

    @property
    def derived_folder(self):
        """Where the files derived from the dataset are kept: ``.mask2former/<name>/`` beside it."""
        return os.path.join(os.path.dirname(self.path), ".mask2former", self.name)


def _fail(path, key, message):
    raise DatasetFileError(f"{path}: key {key!r}: {message}")


def load_dataset_file(path):
    """
    Read and validate the dataset YAML ``path``. A YAML without ``task`` that has ``names`` is
    a YOLO ``data.yaml`` (Ultralytics, Roboflow): an instance dataset in the yolo format, named
    after the file, whose ``train``, ``val`` (and ``test``) are image folders relative to its
    ``path`` (itself relative to the file; default: the file's folder; a "../" that leads
    nowhere is read from the file's folder, as in Roboflow's exports) with their labels in
    the parallel ``labels`` folders, and whose classes are its ``names`` (a list, or a mapping
    of index to name).

    Returns:
        DatasetFile: with absolute paths.

    Raises:
        DatasetFileError: naming the file and the key, for a missing file, unknown or missing
            keys and values of the wrong kind.
        FileNotFoundError: when the YAML or a split's images / annotations do not exist.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Dataset file {path} does not exist")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise DatasetFileError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise DatasetFileError(f"{path}: a dataset file is a mapping of keys (task, train, ...)")
    if "task" not in data and "names" in data:
        return _with_derived_folders(_from_yolo_data(path, data))
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        _fail(path, unknown[0], f"unknown key; the keys are {sorted(_TOP_KEYS)}")

    base = os.path.dirname(path)
    if "root" in data:
        if not isinstance(data["root"], str):
            _fail(path, "root", "must be a folder path")
        base = os.path.join(base, os.path.expanduser(data["root"]))

    name = data.get("name", os.path.splitext(os.path.basename(path))[0])
    if not isinstance(name, str) or not name or any(c in name for c in "/ \t"):
        _fail(path, "name", f"must be a word without spaces or slashes, not {name!r}")
    task = data.get("task")
    if task not in TASKS:
        _fail(path, "task", f"must be one of {list(TASKS)}, not {task!r}")
    fmt = data.get("format")
    if fmt is not None and fmt not in FORMATS:
        _fail(path, "format", f"must be one of {list(FORMATS)} (or left out), not {fmt!r}")
    if fmt == "sem_seg" and task != "semantic":
        _fail(path, "format", "sem_seg label PNGs hold no objects: only task 'semantic' reads them")

    splits = {}
    for split in SPLITS:
        if split in data:
            splits[split] = _parse_split(path, base, split, data[split], fmt)
    for required in ("train", "val"):
        if required not in splits:
            _fail(path, required, "missing: a dataset file needs the train and val splits")

    dataset = DatasetFile(path=path, name=name, task=task, format=fmt, splits=splits)
    _parse_classes(dataset, base, data.get("classes"))
    things = data.get("things")
    if things is not None:
        if not isinstance(things, list) or not all(isinstance(t, str) for t in things):
            _fail(path, "things", "must be a list of class names")
        dataset.things = list(things)
    ignore = data.get("ignore_label", 255)
    if not isinstance(ignore, int) or isinstance(ignore, bool) or not 0 <= ignore <= 65535:
        _fail(path, "ignore_label", f"must be an integer in [0, 65535], not {ignore!r}")
    dataset.ignore_label = ignore
    crowd = data.get("crowd_as_objects", False)
    if not isinstance(crowd, bool):
        _fail(path, "crowd_as_objects", f"must be true or false, not {crowd!r}")
    dataset.crowd_as_objects = crowd
    return _with_derived_folders(dataset)


def _with_derived_folders(dataset):
    """Set each split's folder of embedded images (under ``dataset.derived_folder``)."""
    for split in dataset.splits.values():
        split.embedded_images = os.path.join(dataset.derived_folder, "embedded_images",
                                             split.name)
    return dataset


def _yolo_labels_folder(images):
    """
    Ultralytics' labels folder of an image folder: the path with its last "images" folder
    replaced by "labels" (None when the path has no "images" folder).
    """
    parts = os.path.normpath(images).split(os.sep)
    if "images" not in parts:
        return None
    index = len(parts) - 1 - parts[::-1].index("images")
    return os.sep.join(parts[:index] + ["labels"] + parts[index + 1:])


def _from_yolo_data(path, data):
    """The :class:`DatasetFile` of a YOLO data.yaml (see :func:`load_dataset_file`)."""
    base = os.path.dirname(path)
    if data.get("path"):
        if not isinstance(data["path"], str):
            _fail(path, "path", "must be a folder path")
        base = os.path.normpath(os.path.join(base, os.path.expanduser(data["path"])))
        if not os.path.isdir(base):
            raise FileNotFoundError(
                f"{path}: key 'path': {base} does not exist (a relative path is read from the "
                "folder of this file, not from Ultralytics' datasets folder: give it absolute)")
    splits, notes = {}, []
    for split in SPLITS:
        value = data.get(split)
        if value is None:
            continue
        if not isinstance(value, str):
            _fail(path, split, "must be one folder of images (lists of folders are not read)")
        images = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
        if not os.path.exists(images) and value.startswith("../"):
            images = os.path.normpath(os.path.join(base, value[3:]))
        if os.path.isfile(images):
            _fail(path, split, f"{images} is a file; give the folder of the images (lists of "
                               "image paths are not read)")
        if split == "test" and not os.path.exists(images):  # Roboflow names it even when absent
            notes.append(f"{path}: key 'test': {images} does not exist; no test split")
            continue
        if not os.path.isdir(images):
            raise FileNotFoundError(f"{path}: key {split!r}: {images} does not exist")
        labels = _yolo_labels_folder(images)
        if labels is None or not os.path.isdir(labels):
            raise FileNotFoundError(
                f"{path}: key {split!r}: no labels folder for {images} (YOLO keeps the labels "
                "of <root>/images/<split> in <root>/labels/<split>)")
        splits[split] = Split(name=split, images=images, annotations=labels)
    for required in ("train", "val"):
        if required not in splits:
            _fail(path, required, "missing: a dataset needs the train and val splits")
    names = read_names_file(path)
    return DatasetFile(
        path=path, name=os.path.splitext(os.path.basename(path))[0], task="instance",
        format="yolo", splits=splits, classes=[Category(name=n) for n in names],
        names_file=path, notes=notes)


def _parse_split(path, base, split, entry, fmt):
    if not isinstance(entry, dict):
        _fail(path, split, "must be a mapping with 'images' and 'annotations'")
    unknown = sorted(set(entry) - _SPLIT_KEYS)
    if unknown:
        _fail(path, f"{split}.{unknown[0]}", f"unknown key; the keys are {sorted(_SPLIT_KEYS)}")
    paths = {}
    for key in ("images", "annotations", "panoptic_root"):
        if key not in entry:
            if key == "images":
                _fail(path, f"{split}.images", "missing")
            if key == "annotations":
                paths[key] = _default_annotations(path, split, paths["images"], fmt)
            continue
        if not isinstance(entry[key], str):
            _fail(path, f"{split}.{key}", "must be a path")
        paths[key] = os.path.normpath(os.path.join(base, os.path.expanduser(entry[key])))
        if not os.path.exists(paths[key]):
            raise FileNotFoundError(f"{path}: key {split}.{key}: {paths[key]} does not exist")
    if not os.path.isdir(paths["images"]):
        _fail(path, f"{split}.images", f"{paths['images']} is not a folder of images")
    return Split(name=split, **paths)


def _default_annotations(path, split, images, fmt):
    """A split without ``annotations``: YOLO's labels folder beside the images, if it exists."""
    labels = _yolo_labels_folder(images) if fmt in (None, "yolo") else None
    if labels is None or not os.path.isdir(labels):
        _fail(path, f"{split}.annotations",
              "missing" + (f" (YOLO's labels folder {labels} does not exist either)"
                           if labels else ""))
    return labels


def _parse_classes(dataset, base, classes):
    """Set ``dataset.classes`` (and ``names_file``) from the ``classes`` value."""
    path = dataset.path
    if classes is None:
        return
    if isinstance(classes, bool):
        _fail(path, "classes", "must be a list, a count or a names file")
    if isinstance(classes, int):
        if classes < 1:
            _fail(path, "classes", f"a class count must be positive, not {classes}")
        dataset.classes = [Category(name=str(i)) for i in range(classes)]
        return
    if isinstance(classes, str):
        names_file = os.path.normpath(os.path.join(base, os.path.expanduser(classes)))
        if not os.path.isfile(names_file):
            raise FileNotFoundError(
                f"{path}: key 'classes': names file {names_file} does not exist")
        dataset.names_file = names_file
        dataset.classes = [Category(name=n) for n in read_names_file(names_file)]
        return
    if not isinstance(classes, list) or not classes:
        _fail(path, "classes", "must be a non-empty list, a count or a names file")
    parsed = []
    for i, entry in enumerate(classes):
        key = f"classes[{i}]"
        if isinstance(entry, str):
            parsed.append(Category(name=entry))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            _fail(path, key, "must be a name or a mapping with 'name'")
        unknown = sorted(set(entry) - {"name", "color", "isthing", "id"})
        if unknown:
            _fail(path, f"{key}.{unknown[0]}", "unknown key; the keys are name, id, color, isthing")
        color = entry.get("color")
        if color is not None and not (
            isinstance(color, list) and len(color) == 3
            and all(isinstance(c, int) and 0 <= c <= 255 for c in color)
        ):
            _fail(path, f"{key}.color", f"must be [R, G, B] with values in 0-255, not {color!r}")
        isthing = entry.get("isthing")
        if isthing is not None and not isinstance(isthing, bool):
            _fail(path, f"{key}.isthing", "must be true or false")
        parsed.append(Category(name=entry["name"], id=entry.get("id"), color=color,
                               isthing=isthing))
    names = [c.name for c in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        _fail(path, "classes", f"names must be unique; {duplicates} appear more than once")
    dataset.classes = parsed


def read_names_file(path):
    """
    Class names from a YOLO ``data.yaml`` (``names``: a list, or a mapping of index to name;
    ``nc``, when given, their number) or from a text file with one name per line (LabelMe's
    labels.txt: its "__ignore__" line is no class).
    """
    if path.endswith((".yaml", ".yml")):
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict):
            if set(names) != set(range(len(names))):
                raise DatasetFileError(f"{path}: key 'names': the keys must be the class "
                                       f"indices 0..N-1, got {list(names)}")
            names = [names[k] for k in range(len(names))]
        if not isinstance(names, list) or not names:
            raise DatasetFileError(f"{path}: key 'names': missing or empty (a list of class names)")
        count = data.get("nc", len(names))
        if count != len(names):
            raise DatasetFileError(f"{path}: key 'nc': {count} classes, but 'names' has "
                                   f"{len(names)}")
        names = [str(n) for n in names]
    else:
        with open(path) as f:
            names = [line.strip() for line in f if line.strip()]
        names = [n for n in names if n != IGNORE_LABEL_NAME]
        if not names:
            raise DatasetFileError(f"{path}: no class names (one name per line)")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        where = f"{path}: key 'names'" if path.endswith((".yaml", ".yml")) else path
        raise DatasetFileError(f"{where}: class names must be unique; {duplicates} appear more "
                               "than once")
    return names
