"""
The readers of dataset files on annotations in the shapes that annotation tools and public
projects write (generated here, each in the shape of a real file): LabelMe files of its several
versions (object labels "person-1", no image size, no shape_type, the image only in imageData,
"__ignore__" regions, labels.txt with "_background_"), YOLO data.yaml files as Ultralytics and
Roboflow write them, and COCO jsons as Roboflow and CVAT export them.
"""
import base64
import io
import json
import os

import numpy as np
import pytest
import torch
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, Instances
from panopticapi.utils import rgb2id
from PIL import Image

from mask2former.data.dataset_mappers.utils import rasterize
from mask2former.data.datasets import register_dataset_file
from mask2former.data.datasets.dataset_file import DatasetFileError
from mask2former.data.datasets.register_dataset_file import check_dataset_file
from mask2former.data.image_io import read_image

H, W = 48, 64


def _box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# The objects of every LabelMe file below: two persons (the second in two parts), two bottles
# drawn without group_id (two objects) and a region to ignore.
PERSON_A = _box(2, 2, 14, 20)
PERSON_B = (_box(20, 2, 30, 20), _box(30, 10, 36, 20))
BOTTLES = (_box(40, 4, 46, 14), _box(40, 30, 46, 40))
IGNORE = _box(48, 24, 62, 46)


def _mask(*polygons):
    flat = [[float(v) for point in polygon for v in point] for polygon in polygons]
    return rasterize(flat, H, W).astype(bool)


def _jpeg(path=None):
    buffer = io.BytesIO()
    Image.fromarray(np.full((H, W, 3), 100, np.uint8)).save(buffer, "JPEG")
    if path is not None:
        path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def _shape(label, points, **keys):
    return dict({"label": label, "points": points}, **keys)


def _labelme_files(folder):
    """
    The same objects as LabelMe 5 (group_id, flags, description, image file and imageData),
    LabelMe 3.14 (labels "person-1", "person-2", no group_id), the oldest LabelMe (no
    shape_type, no image size) and LabelMe's tutorial file (the image only in imageData, an
    imagePath that names the json itself) save them.
    """
    folder.mkdir()
    new = [_shape("person", PERSON_A, group_id=None),
           _shape("person", PERSON_B[0], group_id=1), _shape("person", PERSON_B[1], group_id=1),
           _shape("bottle", BOTTLES[0], group_id=None), _shape("bottle", BOTTLES[1], group_id=None),
           _shape("__ignore__", IGNORE, group_id=None)]
    for shape in new:
        shape.update(shape_type="polygon", flags={}, description="", mask=None)
    image = _jpeg(folder / "new.jpg")
    (folder / "new.json").write_text(json.dumps({
        "version": "5.4.1", "flags": {}, "shapes": new, "imagePath": "new.jpg",
        "imageData": base64.b64encode(image).decode(), "imageHeight": H, "imageWidth": W}))
    suffixed = [_shape("person-1", PERSON_A), _shape("person-2", PERSON_B[0]),
                _shape("bottle", BOTTLES[0]), _shape("person-2", PERSON_B[1]),
                _shape("bottle", BOTTLES[1]), _shape("__ignore__", IGNORE)]
    _jpeg(folder / "v3.jpg")
    (folder / "v3.json").write_text(json.dumps({
        "version": "3.14.2", "flags": {}, "lineColor": [0, 255, 0, 128],
        "shapes": [dict(s, shape_type="polygon", line_color=None, flags={}) for s in suffixed],
        "imagePath": "v3.jpg", "imageData": None, "imageHeight": H, "imageWidth": W}))
    _jpeg(folder / "oldest.jpg")
    (folder / "oldest.json").write_text(json.dumps({
        "shapes": suffixed, "imagePath": "oldest.jpg", "imageData": None}))
    (folder / "tutorial.json").write_text(json.dumps({
        "shapes": suffixed, "imagePath": "tutorial.json",
        "imageData": base64.b64encode(_jpeg()).decode()}))


@pytest.fixture
def labelme_dataset(tmp_path):
    """A dataset YAML (``task`` to fill) whose splits are the LabelMe files of every version."""
    _labelme_files(tmp_path / "labelme")
    (tmp_path / "labels.txt").write_text("__ignore__\n_background_\nperson\nbottle\n")

    def write(name, **keys):
        split = {"images": "labelme", "annotations": "labelme"}
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(dict(keys, name=name, train=split, val=split)))
        return path
    return tmp_path, write


def _objects(record, names):
    """(class name, mask) of a record's non-crowd annotations, and its crowd masks."""
    objects, crowd = [], []
    for ann in record["annotations"]:
        mask = rasterize(ann["segmentation"], H, W).astype(bool)
        (crowd if ann["iscrowd"] else objects).append((names[ann["category_id"]], mask))
    return objects, crowd


def test_labelme_files_of_every_version_load_the_same_objects(labelme_dataset):
    root, write = labelme_dataset
    path = write("versions", task="instance")
    registered, reports = check_dataset_file(str(path))
    names = [c.name for c in registered.categories]
    # Object suffixes of old files are no classes, "__ignore__" is none.
    assert names == ["bottle", "person"]
    report = reports["train"]
    assert (report.num_images, report.defects) == (4, [])
    assert (report.embedded_images, report.ignore_regions) == (1, 4)
    assert report.class_counts == {names.index("person"): 8, names.index("bottle"): 8}

    records = DatasetCatalog.get(registered.names["train"])
    expected = sorted([("person", _mask(PERSON_A)), ("person", _mask(*PERSON_B)),
                       ("bottle", _mask(BOTTLES[0])), ("bottle", _mask(BOTTLES[1]))],
                      key=lambda o: (o[0], o[1].sum(), np.argmax(o[1])))
    for record in records:
        assert (record["height"], record["width"]) == (H, W)
        objects, crowd = _objects(record, names)
        objects.sort(key=lambda o: (o[0], o[1].sum(), np.argmax(o[1])))
        # Shapes of one group_id (or one "person-2" label) are one object; bottles drawn
        # without group_id are two.
        assert [n for n, _ in objects] == [n for n, _ in expected]
        assert all((m == e).all() for (_, m), (_, e) in zip(objects, expected))
        assert len(crowd) == len(names) and all((m == _mask(IGNORE)).all() for _, m in crowd)

    # The tutorial file's image, from its imageData, kept beside the dataset file and reused.
    embedded = root / ".mask2former" / "versions" / "embedded_images" / "train" / "tutorial.jpg"
    assert embedded.read_bytes() == base64.b64decode(
        json.loads((root / "labelme" / "tutorial.json").read_text())["imageData"])
    assert {r["file_name"] for r in records} >= {str(embedded), str(root / "labelme" / "new.jpg")}
    written = embedded.stat().st_mtime_ns
    check_dataset_file(str(path))
    assert embedded.stat().st_mtime_ns == written
    os.utime(root / "labelme" / "tutorial.json", ns=(written + 10**9, written + 10**9))
    check_dataset_file(str(path))
    assert embedded.stat().st_mtime_ns == written + 10**9


def test_labelme_ignore_regions_are_ignored_by_coco_evaluation(labelme_dataset, tmp_path):
    """A confident detection in an "__ignore__" region is no false positive."""
    _, write = labelme_dataset
    registered = register_dataset_file(str(write("ignore_eval", task="instance")))
    name = registered.names["val"]
    records = DatasetCatalog.get(name)
    names = [c.name for c in registered.categories]
    evaluator = COCOEvaluator(name, tasks=("segm",), output_dir=str(tmp_path / "eval"))
    evaluator.reset()
    for record in records:
        objects, _ = _objects(record, names)
        masks = [m for _, m in objects] + [_mask(IGNORE)]
        classes = [names.index(n) for n, _ in objects] + [names.index("person")]
        instances = Instances((H, W))
        instances.pred_masks = torch.from_numpy(np.stack(masks))
        instances.pred_classes = torch.tensor(classes)
        instances.scores = torch.tensor([0.5] * len(objects) + [0.99])
        instances.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, W, H]] * len(masks)))
        evaluator.process([{"image_id": record["image_id"]}], [{"instances": instances}])
    assert evaluator.evaluate()["segm"]["AP"] == pytest.approx(100.0)


def test_labelme_labels_file_background_and_ignore(labelme_dataset):
    _, write = labelme_dataset
    # Instance task: labels.txt's "__ignore__" and "_background_" are no classes.
    registered = register_dataset_file(str(write("voc_instance", task="instance",
                                                 classes="labels.txt")))
    assert [c.name for c in registered.categories] == ["person", "bottle"]
    assert any("_background_" in note for note in registered.notes)
    # Semantic task: "_background_" is class 0 where no shape is, "__ignore__" the ignore label.
    registered = register_dataset_file(str(write("voc_semantic", task="semantic",
                                                 classes="labels.txt")))
    assert [c.name for c in registered.categories] == ["_background_", "person", "bottle"]
    for record in DatasetCatalog.get(registered.names["train"]):
        labels = read_image(record["sem_seg_file_name"])
        expected = np.zeros((H, W), np.uint8)
        expected[_mask(PERSON_A) | _mask(*PERSON_B)] = 1
        expected[_mask(*BOTTLES)] = 2
        expected[_mask(IGNORE)] = 255
        assert np.array_equal(labels, expected)
    # Panoptic task: the background is a stuff segment, the ignore region void.
    registered = register_dataset_file(str(write("voc_panoptic", task="panoptic",
                                                 classes="labels.txt",
                                                 things=["person", "bottle"])))
    record = DatasetCatalog.get(registered.names["val"])[0]
    ids = rgb2id(read_image(record["pan_seg_file_name"], "RGB"))
    assert (ids[_mask(IGNORE)] == 0).all() and (ids[~_mask(IGNORE)] != 0).all()
    assert sorted((s["category_id"], s["isthing"]) for s in record["segments_info"]) == [
        (0, False), (1, True), (1, True), (2, True), (2, True)]


# ---------------------------------------------------------------------------------------------
# YOLO: Ultralytics' and Roboflow's data.yaml and folder layouts
# ---------------------------------------------------------------------------------------------
def _yolo_split(images, labels, lines):
    """One image and its label file; ``lines`` the label text."""
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    _jpeg(images / "a.jpg")
    (labels / "a.txt").write_text(lines)


_TRIANGLE = "1 0.25 0.25 0.75 0.25 0.75 0.75\n"


def test_yolo_data_yaml_of_ultralytics_and_roboflow_is_a_dataset_file(tmp_path):
    # Ultralytics: path + images/<split>, labels/<split>, names as a mapping, an empty test.
    root = tmp_path / "datasets" / "seg2"
    for split in ("train", "val"):
        _yolo_split(root / "images" / split, root / "labels" / split, _TRIANGLE)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "seg2.yaml").write_text(
        "path: ../datasets/seg2\ntrain: images/train\nval: images/val\ntest:\n"
        "names:\n  0: person\n  1: bottle\ndownload: https://example.com/seg2.zip\n")
    registered = register_dataset_file(str(tmp_path / "cfg" / "seg2.yaml"))
    assert (registered.dataset.task, registered.format) == ("instance", "yolo")
    assert [c.name for c in registered.categories] == ["person", "bottle"]
    assert set(registered.names.values()) == {"seg2_train", "seg2_val"}
    record = DatasetCatalog.get("seg2_train")[0]
    (ann,) = record["annotations"]
    assert ann["category_id"] == 1 and ann["segmentation"] == [[16.0, 12.0, 48.0, 12.0, 48.0, 36.0]]

    # Roboflow: data.yaml beside train/ and valid/, paths "../train/images", nc and a list.
    root = tmp_path / "roboflow"
    for split in ("train", "valid"):
        _yolo_split(root / split / "images", root / split / "labels", _TRIANGLE)
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnc: 2\n"
        "names: ['person', 'bottle']\n"
        "roboflow:\n  workspace: someone\n  version: 3\n")
    registered = register_dataset_file(str(root / "data.yaml"))
    assert registered.dataset.splits["val"].annotations == str(root / "valid" / "labels")
    assert "test" not in registered.names and "no test split" in registered.notes[0]
    assert len(DatasetCatalog.get(registered.names["val"])[0]["annotations"]) == 1

    # A dataset file of ours may leave the labels folder to the same rule.
    (tmp_path / "ours.yaml").write_text(yaml.safe_dump({
        "task": "instance", "classes": "cfg/seg2.yaml",
        "train": {"images": "datasets/seg2/images/train"},
        "val": {"images": "datasets/seg2/images/val"}}))
    registered = register_dataset_file(str(tmp_path / "ours.yaml"))
    assert registered.format == "yolo"
    assert len(DatasetCatalog.get(registered.names["train"])[0]["annotations"]) == 1


@pytest.mark.parametrize("text,key", [
    ("train: images/train\nval: images/train\nnc: 3\nnames: [a, b]\n", "nc"),
    ("train: images/train\nval: images/train\nnames: {0: a, 2: b}\n", "names"),
    ("train: images/train\nval: images/train\nnames: [a, b, a]\n", "names"),
    ("train: [images/train, images/more]\nval: images/train\nnames: [a, b]\n", "train"),
])
def test_yolo_data_yaml_errors_name_the_key(tmp_path, text, key):
    _yolo_split(tmp_path / "images" / "train", tmp_path / "labels" / "train", _TRIANGLE)
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(DatasetFileError, match=f"data.yaml: key '{key}'"):
        register_dataset_file(str(tmp_path / "data.yaml"))


def test_yolo_detection_boxes_are_named_defects(tmp_path):
    _yolo_split(tmp_path / "images" / "train", tmp_path / "labels" / "train",
                "0 0.5 0.5 0.2 0.3\n" + _TRIANGLE)
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/train\n"
                                        "names: [a, b]\n")
    (defect,) = check_dataset_file(str(tmp_path / "data.yaml"))[1]["train"].defects
    assert (defect.kind, defect.record) == ("box_only", "line 1")
    assert "detection box" in defect.message


# ---------------------------------------------------------------------------------------------
# COCO jsons as annotation tools export them
# ---------------------------------------------------------------------------------------------
def _coco_dataset(folder, annotations, categories, **keys):
    """A COCO json of one image (in a subfolder, id 0) and its dataset YAML."""
    (folder / "images" / "batch1").mkdir(parents=True)
    _jpeg(folder / "images" / "batch1" / "a.jpg")
    (folder / "train.json").write_text(json.dumps({
        "images": [{"id": 0, "file_name": "batch1/a.jpg", "height": H, "width": W}],
        "annotations": [dict(a, id=i, image_id=0) for i, a in enumerate(annotations)],
        "categories": categories}))
    split = {"images": "images", "annotations": "train.json"}
    path = folder / "data.yaml"
    path.write_text(yaml.safe_dump(dict(keys, task="instance", train=split, val=split)))
    return path


_SQUARE = [[4.0, 4.0, 20.0, 4.0, 20.0, 20.0, 4.0, 20.0]]


def test_coco_of_roboflow_ids_from_zero_and_a_grouping_category(tmp_path):
    """Roboflow: category 0 is the group of the others; no area or iscrowd keys."""
    path = _coco_dataset(tmp_path, [
        {"category_id": 1, "segmentation": _SQUARE, "bbox": [4, 4, 16, 16]},
        {"category_id": 2, "segmentation": _SQUARE, "bbox": [4, 4, 16, 16]},
    ], [{"id": 0, "name": "cells", "supercategory": "none"},
        {"id": 1, "name": "red", "supercategory": "cells"},
        {"id": 2, "name": "white", "supercategory": "cells"}])
    registered, reports = check_dataset_file(str(path))
    assert [(c.name, c.id) for c in registered.categories] == [("red", 1), ("white", 2)]
    assert "['cells'] only group other categories" in registered.notes[0]
    assert reports["train"].defects == []
    (record,) = DatasetCatalog.get(registered.names["train"])
    assert record["file_name"] == str(tmp_path / "images" / "batch1" / "a.jpg")
    assert sorted(a["category_id"] for a in record["annotations"]) == [0, 1]
    assert MetadataCatalog.get(registered.names["train"]).thing_dataset_id_to_contiguous_id == {
        1: 0, 2: 1}
    # One class: the group has the class's name.
    path = _coco_dataset(tmp_path / "one", [{"category_id": 1, "segmentation": _SQUARE}], [
        {"id": 0, "name": "leaf", "supercategory": "none"},
        {"id": 1, "name": "leaf", "supercategory": "leaf"}])
    registered, reports = check_dataset_file(str(path))
    assert [(c.name, c.id) for c in registered.categories] == [("leaf", 1)]
    assert (reports["train"].class_counts[0], reports["train"].defects) == (1, [])


def test_coco_crowd_masks_of_cvat_and_box_only_annotations(tmp_path):
    """CVAT exports masks as uncompressed RLE with iscrowd 1; box-only objects are defects."""
    mask = np.zeros((H, W), np.uint8)
    mask[10:30, 5:25] = 1
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    rle = {"counts": counts, "size": [H, W]}
    categories = [{"id": 1, "name": "leaf", "supercategory": ""}]
    path = _coco_dataset(tmp_path / "cvat", [
        {"category_id": 1, "segmentation": rle, "iscrowd": 1, "area": 400.0,
         "bbox": [5, 10, 20, 20]}], categories)
    report = check_dataset_file(str(path))[1]["train"]
    assert (report.crowd, report.class_counts[0], report.defects) == (1, 0, [])
    assert "crowd_as_objects: true" in report.format(["leaf"], "objects")
    path = _coco_dataset(tmp_path / "cvat_objects", [
        {"category_id": 1, "segmentation": rle, "iscrowd": 1, "bbox": [5, 10, 20, 20]}],
        categories, crowd_as_objects=True)
    registered, reports = check_dataset_file(str(path))
    assert (reports["train"].crowd, reports["train"].class_counts[0]) == (0, 1)
    (ann,) = DatasetCatalog.get(registered.names["train"])[0]["annotations"]
    assert ann["iscrowd"] == 0 and (rasterize(ann["segmentation"], H, W) == mask).all()

    path = _coco_dataset(tmp_path / "boxes", [
        {"category_id": 1, "segmentation": [], "bbox": [4, 4, 16, 16]},
        {"category_id": 1, "segmentation": _SQUARE[0], "bbox": [4, 4, 16, 16]},
    ], categories)
    defects = check_dataset_file(str(path))[1]["train"].defects
    assert [(d.kind, d.record) for d in defects] == [
        ("box_only", "annotation id 0"), ("annotation_unreadable", "annotation id 1")]
    assert "outer brackets" in defects[1].message
