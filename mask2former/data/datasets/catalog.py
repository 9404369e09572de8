"""
Helpers shared by the dataset registrations: (re-)registering a dataset by name, checking
that a dataset's files are where the registration expects them, and registering and loading
the two on-disk formats the datasets share (semantic PNGs next to images; COCO-style panoptic
json + PNGs).
"""
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg


def register_dataset(name, loader, **metadata):
    """
    Register ``name`` in ``DatasetCatalog`` with the function ``loader`` and set ``metadata``,
    replacing an earlier registration of the same name (Detectron2's own included), so that
    registering a dataset again for another root directory works.
    """
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)


def register_sem_seg(name, image_dir, gt_dir, prepare, gt_ext="png", **metadata):
    """
    Register the semantic segmentation dataset ``name``: images in ``image_dir``, label images
    of the same names (extension ``gt_ext``) in ``gt_dir``, loaded by
    :func:`load_sem_seg_checked` (``prepare`` says how to create missing files). The metadata
    is ``metadata`` with "image_root" and "sem_seg_root".
    """
    register_dataset(
        name,
        lambda: load_sem_seg_checked(gt_dir, image_dir, prepare, gt_ext=gt_ext),
        image_root=image_dir,
        sem_seg_root=gt_dir,
        **metadata,
    )


def register_panoptic(name, panoptic_json, image_dir, panoptic_dir, meta, prepare,
                      semseg_dir=None, **metadata):
    """
    Register the panoptic segmentation dataset ``name``, loaded by :func:`load_panoptic_json`
    from ``panoptic_json`` (the other arguments are that function's). The metadata is ``meta``
    (see :func:`panoptic_meta`) and ``metadata`` with "image_root", "panoptic_root",
    "panoptic_json" and "sem_seg_root" (``semseg_dir``).
    """
    register_dataset(
        name,
        lambda: load_panoptic_json(
            panoptic_json, image_dir, panoptic_dir, meta, prepare, semseg_dir=semseg_dir
        ),
        image_root=image_dir,
        panoptic_root=panoptic_dir,
        panoptic_json=panoptic_json,
        sem_seg_root=semseg_dir,
        **meta,
        **metadata,
    )


def check_exists(path, prepare):
    """
    Raise ``FileNotFoundError`` naming ``path`` and how to create it when ``path`` is missing.

    Args:
        path (str): a file or folder a dataset needs.
        prepare (str): how to get it, e.g. "run datasets/prepare_ade20k_sem_seg.py".
    """
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Dataset path {path!r} does not exist. {prepare}. Datasets are read from "
            f"$DETECTRON2_DATASETS (now {os.getenv('DETECTRON2_DATASETS', 'datasets')!r}); "
            f"see datasets/README.md for the expected layout."
        )


def load_sem_seg_checked(gt_root, image_root, prepare, gt_ext="png", image_ext="jpg"):
    """
    Detectron2's ``load_sem_seg`` (one dict per image with "file_name" and
    "sem_seg_file_name"), after checking that both folders exist.
    """
    check_exists(image_root, prepare)
    check_exists(gt_root, prepare)
    try:
        dicts = load_sem_seg(gt_root, image_root, gt_ext=gt_ext, image_ext=image_ext)
    except AssertionError:  # Detectron2's "No annotations found in gt_root", with no fix named
        dicts = []
    if not dicts:
        raise FileNotFoundError(
            f"No *.{image_ext} images with *.{gt_ext} annotations found in {image_root!r} and "
            f"{gt_root!r}. {prepare}."
        )
    return dicts


def load_panoptic_json(json_file, image_dir, panoptic_dir, meta, prepare, semseg_dir=None,
                       image_ext=".jpg"):
    """
    Load a COCO-format panoptic dataset: ``json_file`` lists for each image its panoptic PNG
    (in ``panoptic_dir``) and its segments; the image is the PNG's name with ``image_ext`` in
    ``image_dir``.

    Args:
        meta (dict): with "thing_dataset_id_to_contiguous_id" and
            "stuff_dataset_id_to_contiguous_id"; segment category ids are mapped through them.
        semseg_dir (str or None): folder of semantic PNGs of the same names (contiguous ids,
            ignore label elsewhere); when given, each dict gets "sem_seg_file_name".

    Returns:
        list[dict]: Detectron2 dataset dicts with "file_name", "image_id", "pan_seg_file_name",
        "segments_info" (each with contiguous "category_id" and "isthing") and optionally
        "sem_seg_file_name".
    """
    for path in (json_file, image_dir, panoptic_dir) + ((semseg_dir,) if semseg_dir else ()):
        check_exists(path, prepare)
    with open(json_file) as f:
        json_info = json.load(f)
    thing_ids = meta["thing_dataset_id_to_contiguous_id"]
    stuff_ids = meta["stuff_dataset_id_to_contiguous_id"]

    def convert(segment):
        cat = segment["category_id"]
        if cat in thing_ids:
            return dict(segment, category_id=thing_ids[cat], isthing=True)
        if cat in stuff_ids:
            return dict(segment, category_id=stuff_ids[cat], isthing=False)
        raise ValueError(f"{json_file}: unknown category id {cat} in segment {segment}")

    dicts = []
    for ann in json_info["annotations"]:
        stem = os.path.splitext(ann["file_name"])[0]
        record = {
            "file_name": os.path.join(image_dir, stem + image_ext),
            "image_id": ann["image_id"],
            "pan_seg_file_name": os.path.join(panoptic_dir, ann["file_name"]),
            "segments_info": [convert(s) for s in ann["segments_info"]],
        }
        if semseg_dir:
            record["sem_seg_file_name"] = os.path.join(semseg_dir, ann["file_name"])
        dicts.append(record)
    if not dicts:
        raise FileNotFoundError(f"{json_file} lists no annotations. {prepare}.")
    for key in ("file_name", "pan_seg_file_name", "sem_seg_file_name"):
        if key in dicts[0]:
            check_exists(dicts[0][key], prepare)
    return dicts


def panoptic_meta(categories):
    """
    Metadata of a panoptic dataset whose classes are ``categories`` (dicts with "id", "name",
    "color", "isthing"), in contiguous-id order.

    Thing and stuff classes share one contiguous id space [0, K): "thing_classes" and
    "stuff_classes" both list all K names (Detectron2's visualizer indexes either by the
    contiguous id). "thing_dataset_id_to_contiguous_id" maps the thing classes;
    "stuff_dataset_id_to_contiguous_id" maps all K classes, as Detectron2's SemSegEvaluator
    needs for semantic predictions of thing classes (whether a class is a thing is read from
    the thing map only).
    """
    names = [c["name"] for c in categories]
    colors = [c["color"] for c in categories]
    return {
        "thing_classes": names,
        "thing_colors": colors,
        "stuff_classes": names,
        "stuff_colors": colors,
        "thing_dataset_id_to_contiguous_id": {
            c["id"]: i for i, c in enumerate(categories) if c["isthing"]
        },
        "stuff_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories)},
    }
