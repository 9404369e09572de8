"""
COCO AP through faster-coco-eval equals pycocotools' on the shapes val split: the 12 AP / AR
numbers and the precision table (per-category AP) of box and mask AP, for the predictions of
the quick main job's model (trained for a few iterations: its AP is 0, no detection matches)
and for 100 detections per image made from the ground truth (AP about 0.2 to 0.5), and the
instance evaluator reports the same results with either implementation.
"""
import contextlib
import copy
import io
import json
import logging

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import Boxes, BoxMode, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mask2former.evaluation import InstanceSegEvaluator
from mask2former.evaluation.fast_cocoeval import cocoeval_for, fast_cocoeval

DETECTIONS_PER_IMAGE = 100


@pytest.fixture(scope="module")
def shapes_val(quick_run):
    """(ground truth COCO, {source: detections in COCO's result format}, instances json)."""
    output, data_root, _ = quick_run
    instances_json = data_root / "annotations" / "instances_shapes_val.json"
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(instances_json))
    model = json.loads((output / "inference" / "coco_instances_results.json").read_text())
    assert len(model) > 100
    return ground_truth, {"model": model, "jittered": _jittered(ground_truth)}, instances_json


def _jittered(ground_truth):
    """100 detections per image: ground-truth masks shifted, some grown, some relabelled."""
    rng = np.random.default_rng(0)
    categories = ground_truth.getCatIds()
    detections = []
    for image_id in ground_truth.getImgIds():
        annotations = ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=image_id))
        for _ in range(DETECTIONS_PER_IMAGE):
            annotation = annotations[rng.integers(len(annotations))]
            mask = ground_truth.annToMask(annotation)
            mask = np.roll(mask, tuple(rng.integers(-6, 7, size=2)), axis=(0, 1))
            if rng.random() < 0.3:  # one pixel larger downwards and to the right
                mask = mask | np.roll(mask, 1, axis=0) | np.roll(mask, 1, axis=1)
            if not mask.any():
                continue
            rle = mask_util.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode()
            category = annotation["category_id"]
            if rng.random() < 0.2:
                category = int(rng.choice(categories))
            detections.append({"image_id": image_id, "category_id": category,
                               "segmentation": rle, "bbox": mask_util.toBbox(rle).tolist(),
                               "score": float(rng.random())})
    return detections


def _evaluate(cocoeval_class, ground_truth, detections, iou_type):
    """COCOeval as Detectron2 runs it: masks are scored without the boxes."""
    detections = copy.deepcopy(detections)
    if iou_type == "segm":
        for detection in detections:
            detection.pop("bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation = cocoeval_class(ground_truth, ground_truth.loadRes(detections), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.asarray(evaluation.stats), evaluation.eval["precision"]


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("source", ["model", "jittered"])
def test_faster_coco_eval_gives_the_numbers_of_pycocotools(shapes_val, source, iou_type):
    ground_truth, detections, _ = shapes_val
    fast, name = fast_cocoeval()
    assert name.startswith("faster-coco-eval")
    fast_stats, fast_precision = _evaluate(fast, ground_truth, detections[source], iou_type)
    stats, precision = _evaluate(COCOeval, ground_truth, detections[source], iou_type)
    assert stats.shape == fast_stats.shape == (12,)
    if source == "jittered":
        assert stats[0] > 0.05 and stats[8] > 0.05  # AP and AR@100 of detections that match
    np.testing.assert_allclose(fast_stats, stats, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast_precision, precision, rtol=0, atol=1e-6)


def _instances(detections, image):
    """Detectron2 "instances" output of the detections of one image (contiguous class ids)."""
    height, width = image["height"], image["width"]
    instances = Instances((height, width))
    masks = [mask_util.decode(d["segmentation"]) for d in detections]
    instances.pred_masks = torch.from_numpy(np.stack(masks).astype(bool)).reshape(-1, height,
                                                                                   width)
    boxes = [BoxMode.convert(d["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for d in detections]
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.scores = torch.tensor([d["score"] for d in detections])
    instances.pred_classes = torch.tensor([d["category_id"] - 1 for d in detections])
    return instances


def test_instance_evaluator_reports_the_same_results_and_names_the_implementation(
        shapes_val, tmp_path):
    ground_truth, detections, instances_json = shapes_val
    name = "fast_cocoeval_shapes_val"
    register_coco_instances(name, {}, str(instances_json), str(instances_json.parents[1]))
    try:
        DatasetCatalog.get(name)  # sets the metadata's dataset id -> contiguous id map
        assert ground_truth.getCatIds() == [1, 2, 3]  # contiguous id = dataset id - 1
        messages, logger = [], logging.getLogger("detectron2.evaluation.coco_evaluation")
        handler, level = logging.Handler(), logger.level
        handler.emit = lambda record: messages.append(record.getMessage())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        results = {}
        for use_fast_impl in (True, False):
            evaluator = InstanceSegEvaluator(name, output_dir=str(tmp_path),
                                             use_fast_impl=use_fast_impl)
            evaluator.reset()
            for image in ground_truth.loadImgs(ground_truth.getImgIds()):
                of_image = [d for d in detections["jittered"] if d["image_id"] == image["id"]]
                evaluator.process([{"image_id": image["id"]}],
                                  [{"instances": _instances(of_image, image)}])
            results[use_fast_impl] = evaluator.evaluate()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert any(m.startswith("COCO AP computed by faster-coco-eval") for m in messages)
    assert "COCO AP computed by pycocotools' COCOeval." in messages
    for task in ("bbox", "segm"):
        assert results[True][task]["AP"] > 5
        assert results[True][task] == pytest.approx(results[False][task], abs=1e-4, nan_ok=True)


@pytest.mark.parametrize("image_id, fast", [(7, True), ("ADE_val_00000001", False)])
def test_datasets_whose_image_ids_are_not_integers_are_evaluated_by_pycocotools(image_id, fast):
    ground_truth = COCO()
    ground_truth.dataset = {"images": [{"id": image_id, "height": 4, "width": 4}],
                            "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
    cocoeval_class, name = cocoeval_for(ground_truth)
    assert (cocoeval_class is fast_cocoeval()[0]) == fast
    assert (cocoeval_class is COCOeval) == (not fast)
    assert fast or "needs integer image ids, not e.g. 'ADE_val_00000001'" in name
    assert cocoeval_for(ground_truth, use_fast_impl=False)[0] is COCOeval
