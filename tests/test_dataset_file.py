"""
Datasets described by a file: every annotation format loads the generated shapes to the same
Detectron2 dataset dicts, every defect of the check is named with its file and record, schema
errors name the key, and each task trains and evaluates from a dataset YAML with train_net.py.
"""
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog
from panopticapi.utils import id2rgb, rgb2id
from PIL import Image

from mask2former.config import get_maskformer2_cfg
from mask2former.data.dataset_mappers.utils import rasterize
from mask2former.data.datasets import apply_dataset_file, register_dataset_file
from mask2former.data.datasets.dataset_check import DatasetDefectsError
from mask2former.data.datasets.dataset_file import DatasetFileError
from mask2former.data.datasets.generated_shapes import SHAPES_CATEGORIES, generate_shapes_dataset
from mask2former.data.datasets.register_dataset_file import check_dataset_file
from mask2former.data.datasets.shapes_formats import write_shapes_formats
from mask2former.data.image_io import read_image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NAMES = [c["name"] for c in SHAPES_CATEGORIES]
THINGS = [c["name"] for c in SHAPES_CATEGORIES if c["isthing"]]
POLYGON_FORMATS = ("coco_polygons", "labelme", "yolo")


@pytest.fixture(scope="session")
def shapes_formats(tmp_path_factory):
    """The generated shapes (6 train, 3 val images of 64 x 64) in every format: format -> YAML."""
    root = tmp_path_factory.mktemp("own_data")
    generate_shapes_dataset(str(root / "shapes"), seed=3, num_train=6, num_val=3, size=64)
    return root, write_shapes_formats(str(root / "shapes"), str(root / "formats"))


def _reference(root, split):
    """file name -> list of (class name, (H, W) bool mask) of the generated visible segments."""
    annotations = root / "shapes" / "annotations"
    data = json.loads((annotations / f"panoptic_shapes_{split}.json").read_text())
    categories = {c["id"]: c["name"] for c in data["categories"]}
    images = {i["id"]: i["file_name"] for i in data["images"]}
    reference = {}
    for ann in data["annotations"]:
        ids = rgb2id(read_image(str(annotations / f"panoptic_shapes_{split}" / ann["file_name"]),
                                "RGB"))
        file_name = str(root / "shapes" / f"shapes_{split}" / images[ann["image_id"]])
        reference[file_name] = [(categories[s["category_id"]], ids == s["id"])
                                for s in ann["segments_info"]]
    return reference


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def _match(expected, actual, min_iou):
    """Each expected (name, mask) has an actual one of the same name with IoU >= min_iou."""
    assert len(actual) == len(expected)
    ious = []
    for name, mask in expected:
        best = max((_iou(mask, m) for n, m in actual if n == name), default=0.0)
        ious.append(best)
    assert min(ious) >= min_iou, ious
    return min(ious)


def _load(yaml_path, split="train", **overrides):
    if overrides:
        data = yaml.safe_load(Path(yaml_path).read_text())
        data.update(overrides)
        yaml_path = Path(yaml_path).with_name(f"{overrides.get('name', 'variant')}.yaml")
        yaml_path.write_text(yaml.safe_dump(data))
    registered = register_dataset_file(str(yaml_path))
    return registered, DatasetCatalog.get(registered.names[split])


@pytest.mark.parametrize("fmt", ["coco_polygons", "coco_rle", "coco_rle_uncompressed", "yolo"])
def test_instance_formats_load_the_generated_objects(shapes_formats, fmt):
    root, yamls = shapes_formats
    registered, records = _load(yamls[fmt])
    assert [c.name for c in registered.categories] == THINGS
    reference = _reference(root, "train")
    assert sorted(r["file_name"] for r in records) == sorted(reference)
    for record in records:
        actual = [(THINGS[a["category_id"]], rasterize(a["segmentation"], 64, 64).astype(bool))
                  for a in record["annotations"]]
        expected = [(n, m) for n, m in reference[record["file_name"]] if n in THINGS]
        # Polygons follow pixel edges: polygon formats are exact too.
        assert _match(expected, actual, 0.98 if fmt in POLYGON_FORMATS else 1.0) == 1.0


@pytest.mark.parametrize("fmt", ["coco_panoptic", "labelme"])
def test_panoptic_formats_load_the_generated_segments(shapes_formats, fmt):
    root, yamls = shapes_formats
    registered, records = _load(yamls[fmt], split="val")
    assert [c.name for c in registered.categories] == NAMES
    meta = MetadataCatalog.get(registered.names["val"])
    assert meta.evaluator_type == "coco_panoptic_seg"
    assert set(meta.thing_dataset_id_to_contiguous_id.values()) == {0, 1, 2}
    reference = _reference(root, "val")
    for record in records:
        ids = rgb2id(read_image(record["pan_seg_file_name"], "RGB"))
        actual = [(NAMES[s["category_id"]], ids == s["id"]) for s in record["segments_info"]]
        assert all(s["isthing"] == (NAMES[s["category_id"]] in THINGS)
                   for s in record["segments_info"])
        _match(reference[record["file_name"]], actual, 1.0)
        labels = read_image(record["sem_seg_file_name"])
        for name, mask in reference[record["file_name"]]:
            assert (labels[mask] == NAMES.index(name)).all()


@pytest.mark.parametrize("fmt,overrides", [
    ("sem_seg_ids", {}), ("sem_seg_palette", {}),
    ("labelme", {"task": "semantic", "name": "labelme_semantic"}),
    ("coco_panoptic", {"task": "semantic", "name": "coco_panoptic_semantic"}),
])
def test_semantic_formats_load_the_generated_labels(shapes_formats, fmt, overrides):
    root, yamls = shapes_formats
    registered, records = _load(yamls[fmt], **overrides)
    assert [c.name for c in registered.categories] == NAMES
    generated = root / "shapes" / "panoptic_semseg_shapes_train"
    for record in records:
        stem = Path(record["file_name"]).stem
        expected = np.asarray(Image.open(generated / f"{stem}.png"))
        assert np.array_equal(np.asarray(Image.open(record["sem_seg_file_name"])), expected)


def test_config_follows_the_dataset_file(shapes_formats, tmp_path):
    _, yamls = shapes_formats
    config = REPO / "configs/custom/instance-segmentation/maskformer2_R50.yaml"
    cfg = get_maskformer2_cfg(str(config), ["DATASETS.FILE", yamls["yolo"]])
    assert cfg.DATASETS.TRAIN == ("shapes_yolo_train",)
    assert cfg.DATASETS.TEST == ("shapes_yolo_val",)
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 3
    assert cfg.INPUT.DATASET_MAPPER_NAME == "coco_instance_lsj"
    meta = MetadataCatalog.get("shapes_yolo_val")
    assert meta.thing_classes == THINGS and meta.evaluator_type == "coco"
    # A published panoptic config on a semantic dataset: its mapper and outputs follow the task.
    cfg = get_maskformer2_cfg(
        str(REPO / "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml"))
    apply_dataset_file(cfg, yamls["sem_seg_palette"])
    assert cfg.INPUT.DATASET_MAPPER_NAME == "mask_former_semantic"
    test = cfg.MODEL.MASK_FORMER.TEST
    assert (test.SEMANTIC_ON, test.INSTANCE_ON, test.PANOPTIC_ON) == (True, False, False)
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 6 and os.path.isabs(cfg.DATASETS.FILE)
    assert MetadataCatalog.get(cfg.DATASETS.TEST[0]).stuff_classes == NAMES


# ---------------------------------------------------------------------------------------------
# The check: every defect named with its file and record
# ---------------------------------------------------------------------------------------------
def _dataset_yaml(folder, name, annotations, **keys):
    """A dataset YAML in ``folder`` whose train and val splits are images/ and ``annotations``."""
    path = folder / f"{name}.yaml"
    split = dict({"images": "images", "annotations": annotations}, **keys.pop("split", {}))
    path.write_text(yaml.safe_dump(dict(keys, train=split, val=split)))
    return path


def _image(path, size=32):
    Image.fromarray(np.full((size, size, 3), 120, np.uint8)).save(path)


def _coco_with_defects(folder):
    """A COCO json whose images 1..N each carry one defect; returns (yaml, {kind: record})."""
    images_dir = folder / "images"
    images_dir.mkdir(parents=True)
    square = [4, 4, 20, 4, 20, 20, 4, 20]
    defects = {  # kind -> (image file or None, annotation changes)
        "image_missing": ("missing.jpg", {}),
        "image_unreadable": ("broken.jpg", {}),
        "unknown_category": ("a.jpg", {"category_id": 9}),
        "too_few_points": ("b.jpg", {"segmentation": [[4, 4, 20, 4]]}),
        "empty_mask": ("c.jpg", {"segmentation": [[4, 4, 10, 10, 16, 16]]}),
        "outside_image": ("d.jpg", {"segmentation": [[4, 4, 50, 4, 50, 20, 4, 20]]}),
        "size_mismatch": ("e.jpg", {"segmentation": {"size": [16, 16], "counts": [0, 256]}}),
        "duplicate_id": ("f.jpg", {"id": 100}),
    }
    images, annotations = [], []
    for index, (kind, (file_name, changes)) in enumerate(defects.items(), start=1):
        if kind == "image_unreadable":
            (images_dir / file_name).write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        elif kind != "image_missing":
            _image(images_dir / file_name)
        images.append({"id": index, "file_name": file_name, "height": 32, "width": 32})
        annotations.append(dict({"id": index, "image_id": index, "category_id": 1,
                                 "segmentation": [square], "iscrowd": 0,
                                 "bbox": [4, 4, 16, 16]}, **changes))
    _image(images_dir / "good.jpg")
    images.append({"id": 50, "file_name": "good.jpg", "height": 32, "width": 32})
    annotations += [dict(annotations[0], id=100, image_id=8),  # f.jpg's id again
                    dict(annotations[0], id=200, image_id=50),
                    dict(annotations[0], id=101, image_id=77)]  # an unknown image
    (folder / "train.json").write_text(json.dumps({
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "box"}]}))
    return _dataset_yaml(folder, "data", "train.json", task="instance"), defects


def test_check_names_every_defect_with_its_file_and_record(tmp_path):
    path, defects = _coco_with_defects(tmp_path / "coco")
    _, reports = check_dataset_file(str(path))
    found = reports["train"].defects
    kinds = {d.kind for d in found}
    assert kinds == set(defects) | {"unknown_image"}
    json_file = str(tmp_path / "coco" / "train.json")
    unknown = next(d for d in found if d.kind == "unknown_image")
    assert unknown.file == json_file and unknown.record == "annotation id 101"
    assert next(d for d in found if d.kind == "too_few_points").record == "annotation id 4"
    missing = next(d for d in found if d.kind == "image_missing")
    assert "missing.jpg" in str(missing)
    # Training refuses the split, naming the defects; skipping drops exactly those images.
    with pytest.raises(DatasetDefectsError, match=r"too_few_points.*annotation id 4"):
        DatasetCatalog.get(register_dataset_file(str(path)).names["train"])
    records = DatasetCatalog.get(register_dataset_file(str(path), skip_invalid=True).names["train"])
    assert [os.path.basename(r["file_name"]) for r in records] == ["good.jpg"]
    assert (reports["train"].num_images, reports["train"].skipped) == (1, len(defects))


def test_check_names_folder_format_defects(tmp_path):
    """Label PNG values, panoptic PNG segments, YOLO and LabelMe records."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b"):
        _image(images / f"{name}.jpg")
    labels = tmp_path / "labels"
    labels.mkdir()
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(labels / "a.png")  # 7 of 3 classes
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(labels / "b.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(labels / "orphan.png")
    semantic = _dataset_yaml(tmp_path, "semantic", "labels", task="semantic",
                             classes=["x", "y", "z"])
    found = check_dataset_file(str(semantic))[1]["train"].defects
    assert {(d.kind, os.path.basename(d.file)) for d in found} == {
        ("semantic_value", "a.png"), ("unknown_image", "orphan.png")}

    pngs = tmp_path / "panoptic"
    pngs.mkdir()
    ids = np.zeros((32, 32), np.int32)
    ids[:16], ids[16:20] = 5, 6  # segment 6 is not in the json
    Image.fromarray(id2rgb(ids)).save(pngs / "a.png")
    (tmp_path / "panoptic.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "height": 32, "width": 32}],
        "annotations": [{"image_id": 1, "file_name": "a.png",
                         "segments_info": [{"id": 5, "category_id": 1, "iscrowd": 0}]}],
        "categories": [{"id": 1, "name": "x", "isthing": 1}]}))
    panoptic = _dataset_yaml(tmp_path, "pan", "panoptic.json", task="panoptic",
                             split={"panoptic_root": "panoptic"})
    found = check_dataset_file(str(panoptic))[1]["train"].defects
    assert [(d.kind, os.path.basename(d.file)) for d in found] == [
        ("panoptic_segment_not_in_json", "a.png")]

    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "a.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n5 0.1 0.1 0.5 0.1 0.5 0.5\n0 0.1 0.1\n")
    (yolo / "b.txt").write_text("0 0.1 0.1 0.5 0.1 1.8 0.5\n")
    yolo_yaml = _dataset_yaml(tmp_path, "yolo", "yolo", task="instance", classes=["x"])
    found = check_dataset_file(str(yolo_yaml))[1]["train"].defects
    assert {(d.kind, os.path.basename(d.file), d.record) for d in found} == {
        ("unknown_category", "a.txt", "line 2"), ("too_few_points", "a.txt", "line 3"),
        ("outside_image", "b.txt", "line 1")}

    labelme = tmp_path / "labelme"
    labelme.mkdir()
    shapes = [{"label": "x", "points": [[1, 1], [9, 1], [9, 9]], "shape_type": "polygon"},
              {"label": "q", "points": [[1, 1], [9, 1], [9, 9]], "shape_type": "polygon"},
              {"label": "x", "points": [[1, 1], [9, 9]], "shape_type": "line"}]
    (labelme / "a.json").write_text(json.dumps({
        "shapes": shapes, "imagePath": "../images/a.jpg", "imageHeight": 32, "imageWidth": 32}))
    labelme_yaml = _dataset_yaml(tmp_path, "labelme", "labelme", task="instance", classes=["x"])
    found = check_dataset_file(str(labelme_yaml))[1]["train"].defects
    assert {(d.kind, d.record) for d in found} == {
        ("unknown_category", "shape 1 (label 'q')"),
        ("annotation_unreadable", "shape 2 (label 'x')")}


_SPLIT = {"images": ".", "annotations": "a.json"}


@pytest.mark.parametrize("content,key", [
    ({"train": _SPLIT, "val": _SPLIT}, "task"),
    ({"task": "detection", "train": _SPLIT, "val": _SPLIT}, "task"),
    ({"task": "instance", "val": _SPLIT}, "train"),
    ({"task": "instance", "trian": _SPLIT, "val": _SPLIT}, "trian"),
    ({"task": "instance", "train": dict(_SPLIT, annotation="a.json"), "val": _SPLIT},
     "train.annotation"),
    ({"task": "instance", "train": _SPLIT, "val": _SPLIT,
      "classes": [{"name": "a", "color": [1, 2]}]}, "classes[0].color"),
    ({"task": "semantic", "train": _SPLIT, "val": _SPLIT, "format": "sem_seg", "classes": 3,
      "ignore_label": 1}, "ignore_label"),
])
def test_schema_errors_name_the_key_and_the_file(tmp_path, content, key):
    (tmp_path / "a.json").write_text("{}")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(DatasetFileError, match=re.escape(f"bad.yaml: key '{key}'")):
        register_dataset_file(str(path))


def test_panoptic_needs_the_thing_classes(shapes_formats):
    _, yamls = shapes_formats
    with pytest.raises(DatasetFileError, match="key 'things'"):
        _load(yamls["yolo"], task="panoptic", name="yolo_panoptic")


# ---------------------------------------------------------------------------------------------
# Training and evaluation from a dataset YAML, as train_net.py runs them
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task,fmt,metric", [
    ("instance", "yolo", ("segm", "AP")),
    ("panoptic", "labelme", ("panoptic_seg", "PQ")),
    ("semantic", "sem_seg_palette", ("sem_seg", "mIoU")),
])
def test_each_task_trains_and_evaluates_from_a_yaml(shapes_formats, tmp_path, task, fmt, metric):
    import train_net
    from mask2former.engine import argument_parser

    _, yamls = shapes_formats
    config = REPO / f"configs/custom/{task}-segmentation/maskformer2_R18.yaml"
    args = argument_parser().parse_args([
        "--config-file", str(config), "--dataset", yamls[fmt], "OUTPUT_DIR", str(tmp_path),
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.EPOCHS", "1", "TEST.EVAL_PERIOD", "0",
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "8", "MODEL.MASK_FORMER.DEC_LAYERS", "2",
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", "1", "INPUT.IMAGE_SIZE", "64",
    ])
    train_net.main(args)
    # The run's config.yaml names the dataset file: evaluation, the demo and export read it.
    evaluate = argument_parser().parse_args([
        "--config-file", str(tmp_path / "config.yaml"), "--eval-only", "MODEL.WEIGHTS",
        str(tmp_path / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "eval")])
    results = train_net.main(evaluate)
    assert np.isfinite(results[metric[0]][metric[1]])
    dumped = get_maskformer2_cfg(str(tmp_path / "config.yaml"))
    assert dumped.SOLVER.MAX_ITER == 3  # 1 epoch of 6 images at batch 2
    assert dumped.DATASETS.FILE == yamls[fmt]
    from mask2former.maskformer_model import MaskFormer

    metadata = MaskFormer.from_config(dumped)["metadata"]
    names = metadata.thing_classes if task == "instance" else metadata.stuff_classes
    assert names == (THINGS if task == "instance" else NAMES)


def test_python_route_derives_the_schedule_or_the_trainer_refuses(shapes_formats, tmp_path):
    """A config of configs/custom/ built in Python has SOLVER.MAX_ITER 0 until derive_schedule:
    the trainer refuses it, naming the call, rather than train zero iterations."""
    import train_net
    from mask2former.data.datasets import derive_schedule

    _, yamls = shapes_formats
    config = REPO / "configs/custom/instance-segmentation/maskformer2_R18.yaml"
    cfg = get_maskformer2_cfg(str(config), [
        "DATASETS.FILE", yamls["coco_polygons"], "OUTPUT_DIR", str(tmp_path), "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.EPOCHS", "1", "MODEL.DEVICE", "cpu"])
    with pytest.raises(ValueError, match=r"SOLVER\.MAX_ITER is 0.*derive_schedule\(cfg\)"):
        train_net.Trainer(cfg)
    derive_schedule(cfg)
    assert cfg.SOLVER.MAX_ITER == 3  # 1 epoch of 6 images at batch 2
