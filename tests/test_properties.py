"""
Property-based tests (hypothesis): any valid annotation set through the training dataset
mappers, and any predictions through the panoptic / instance / semantic post-processing, give
well-formed outputs: shapes, dtypes, ids in range, no overlapping panoptic segments.
"""
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from panopticapi.utils import id2rgb
from PIL import Image

from detectron2.structures import BoxMode

from mask2former.data.dataset_mappers import (
    COCOInstanceLSJDatasetMapper,
    COCOPanopticLSJDatasetMapper,
    MaskFormerSemanticDatasetMapper,
)
from mask2former.modeling.postprocessing import (
    instance_inference,
    panoptic_inference,
    semantic_inference,
)
from small_model import small_config

NUM_CLASSES = 5
IGNORE = 255
SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _config():
    cfg = small_config(num_classes=NUM_CLASSES)
    cfg.DATASETS.TRAIN = ("shapes_panoptic_train",)  # registered, with ignore_label 255
    cfg.INPUT.IMAGE_SIZE = 32
    cfg.INPUT.MIN_SIZE_TRAIN = (24, 32)
    cfg.INPUT.MAX_SIZE_TRAIN = 64
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.TYPE = "absolute"
    cfg.INPUT.CROP.SIZE = (20, 28)
    cfg.INPUT.COLOR_AUG_SSD = True
    cfg.INPUT.SIZE_DIVISIBILITY = 16
    return cfg


PANOPTIC_MAPPER = COCOPanopticLSJDatasetMapper(_config(), is_train=True)
SEMANTIC_MAPPER = MaskFormerSemanticDatasetMapper(_config(), is_train=True)
INSTANCE_MAPPER = COCOInstanceLSJDatasetMapper(_config(), is_train=True)
WORKDIR = Path(tempfile.mkdtemp(prefix="m2f_properties_"))


@st.composite
def label_maps(draw):
    """
    A label map (H, W) int64 painted with rectangles of labels 1..n (0 = unlabeled), and for
    each label a (category, isthing, iscrowd); some labels may end up fully covered.
    """
    h, w = draw(st.integers(8, 40)), draw(st.integers(8, 40))
    n = draw(st.integers(0, 6))
    label = np.zeros((h, w), np.int64)
    for k in range(1, n + 1):
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
        label[y0:y1, x0:x1] = k
    attributes = [
        (draw(st.integers(0, NUM_CLASSES - 1)), draw(st.booleans()),
         draw(st.sampled_from([0, 0, 0, 1])))
        for _ in range(n)
    ]
    return label, attributes, draw(st.integers(0, 2**31 - 1))


def _save_image(shape, seed, name):
    path = WORKDIR / name
    rgb = np.random.default_rng(seed).integers(0, 256, shape + (3,), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return str(path)


def _check_targets(instances, size, disjoint=True):
    """gt_classes (N,) int64 in range; gt_masks (N, H, W) bool, non-empty (and disjoint)."""
    classes, masks = instances.gt_classes, instances.gt_masks.tensor
    assert classes.dtype == torch.int64 and masks.dtype == torch.bool
    assert masks.shape == (len(classes),) + size
    assert ((classes >= 0) & (classes < NUM_CLASSES)).all()
    assert masks.flatten(1).any(1).all()
    if disjoint and len(masks):
        assert masks.sum(0).max() <= 1
    return classes, masks


@SETTINGS
@given(label_maps(), st.sampled_from([1, 7, 300, 70000]))
def test_panoptic_mapper_outputs_well_formed_targets(example, id_scale):
    label, attributes, seed = example
    segment_ids = {k: k * id_scale for k in range(1, len(attributes) + 1)}
    pan = np.vectorize(lambda k: segment_ids.get(k, 0))(label) if attributes else label
    pan_path = WORKDIR / "pan.png"
    Image.fromarray(id2rgb(pan)).save(pan_path)
    segments_info = [
        {"id": segment_ids[k], "category_id": cat, "isthing": thing, "iscrowd": crowd}
        for k, (cat, thing, crowd) in enumerate(attributes, start=1)
    ]
    dataset_dict = {"file_name": _save_image(label.shape, seed, "pan_image.png"),
                    "pan_seg_file_name": str(pan_path), "segments_info": segments_info,
                    "height": label.shape[0], "width": label.shape[1]}
    np.random.seed(seed)
    out = PANOPTIC_MAPPER(copy.deepcopy(dataset_dict))
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 32, 32)
    classes, _ = _check_targets(out["instances"], (32, 32))
    non_crowd = [s for s in segments_info if not s["iscrowd"]]
    assert len(classes) <= len(non_crowd)
    assert set(classes.tolist()) <= {s["category_id"] for s in non_crowd}


@SETTINGS
@given(label_maps())
def test_semantic_mapper_outputs_well_formed_targets(example):
    label, attributes, seed = example
    classes_of = np.array([IGNORE] + [cat for cat, _, _ in attributes], np.uint8)
    sem = classes_of[label]
    sem_path = WORKDIR / "sem.png"
    Image.fromarray(sem).save(sem_path)
    dataset_dict = {"file_name": _save_image(label.shape, seed, "sem_image.png"),
                    "sem_seg_file_name": str(sem_path),
                    "height": label.shape[0], "width": label.shape[1]}
    np.random.seed(seed)
    out = SEMANTIC_MAPPER(copy.deepcopy(dataset_dict))
    image, sem_seg = out["image"], out["sem_seg"]
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    assert sem_seg.dtype == torch.int64 and sem_seg.shape == image.shape[1:]
    assert all(s % 16 == 0 for s in sem_seg.shape)
    assert set(sem_seg.unique().tolist()) <= set(classes_of.tolist())
    classes, masks = _check_targets(out["instances"], tuple(sem_seg.shape))
    assert sorted(classes.tolist()) == sorted(set(sem_seg.unique().tolist()) - {IGNORE})
    for c, m in zip(classes.tolist(), masks):
        assert torch.equal(m, sem_seg == c)


@st.composite
def objects(draw):
    """COCO instance annotations of an (H, W) image: polygons (triangles, quadrilaterals)."""
    h, w = draw(st.integers(8, 40)), draw(st.integers(8, 40))
    annotations = []
    for _ in range(draw(st.integers(0, 5))):
        corners = draw(st.integers(3, 4))
        xs = [draw(st.floats(0, w)) for _ in range(corners)]
        ys = [draw(st.floats(0, h)) for _ in range(corners)]
        annotations.append({
            "segmentation": [[v for xy in zip(xs, ys) for v in xy]],
            "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": draw(st.integers(0, NUM_CLASSES - 1)),
            "iscrowd": draw(st.sampled_from([0, 0, 0, 1])),
        })
    return (h, w), annotations, draw(st.integers(0, 2**31 - 1))


@SETTINGS
@given(objects())
def test_instance_mapper_outputs_well_formed_targets(example):
    size, annotations, seed = example
    dataset_dict = {"file_name": _save_image(size, seed, "instance_image.png"),
                    "annotations": annotations, "height": size[0], "width": size[1]}
    np.random.seed(seed)
    out = INSTANCE_MAPPER(copy.deepcopy(dataset_dict))
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 32, 32)
    classes, _ = _check_targets(out["instances"], (32, 32), disjoint=False)
    non_crowd = [a for a in annotations if not a["iscrowd"]]
    assert len(classes) <= len(non_crowd)
    assert set(classes.tolist()) <= {a["category_id"] for a in non_crowd}


@st.composite
def predictions(draw):
    """(mask_cls (Q, K+1), mask_pred (Q, H, W)) finite float32 logits and the thing classes."""
    q, k = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    logits = st.floats(-12, 12, width=32)
    mask_cls = torch.from_numpy(draw(arrays(np.float32, (q, k + 1), elements=logits)))
    mask_pred = torch.from_numpy(draw(arrays(np.float32, (q, h, w), elements=logits)))
    things = set(draw(st.lists(st.integers(0, k - 1), unique=True)))
    return mask_cls, mask_pred, things


@SETTINGS
@given(predictions(), st.floats(0, 1), st.floats(0, 1))
def test_panoptic_inference_gives_disjoint_listed_segments(preds, object_threshold, overlap):
    mask_cls, mask_pred, things = preds
    panoptic_seg, segments_info = panoptic_inference(mask_cls, mask_pred, object_threshold,
                                                     overlap, things)
    k = mask_cls.shape[1] - 1
    assert panoptic_seg.dtype == torch.int32 and panoptic_seg.shape == mask_pred.shape[1:]
    ids = [s["id"] for s in segments_info]
    assert ids == list(range(1, len(ids) + 1))
    assert set(panoptic_seg.unique().tolist()) - {0} == set(ids)  # listed == present
    stuff = [s["category_id"] for s in segments_info if not s["isthing"]]
    assert len(stuff) == len(set(stuff))  # one segment per stuff class
    for s in segments_info:
        assert 0 <= s["category_id"] < k and s["isthing"] == (s["category_id"] in things)
    # A labeled pixel is covered by some kept mask with probability >= 0.5.
    labeled = panoptic_seg > 0
    assert not labeled.any() or (mask_pred.sigmoid() >= 0.5).any(0)[labeled].all()


@SETTINGS
@given(predictions(), st.integers(1, 30), st.booleans())
def test_instance_inference_gives_well_formed_instances(preds, topk, only_things):
    mask_cls, mask_pred, things = preds
    q, k = mask_cls.shape[0], mask_cls.shape[1] - 1
    result = instance_inference(mask_cls, mask_pred, topk, things if only_things else None)
    n = len(result)
    assert result.image_size == tuple(mask_pred.shape[1:])
    assert n <= min(topk, q * k)
    assert result.pred_masks.dtype == torch.bool and result.pred_masks.shape == (n,) + tuple(
        mask_pred.shape[1:])
    assert result.pred_classes.dtype == torch.int64
    assert ((result.pred_classes >= 0) & (result.pred_classes < k)).all()
    if only_things:
        assert set(result.pred_classes.tolist()) <= things
    assert ((result.scores >= 0) & (result.scores <= 1 + 1e-6)).all()
    boxes = result.pred_boxes.tensor
    for mask, box in zip(result.pred_masks, boxes):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(xs):
            assert box[0] <= xs.min() and box[1] <= ys.min()
            assert box[2] >= xs.max() + 1 - 1e-4 and box[3] >= ys.max() + 1 - 1e-4


@SETTINGS
@given(predictions())
def test_semantic_inference_scores_are_bounded(preds):
    mask_cls, mask_pred, _ = preds
    scores = semantic_inference(mask_cls, mask_pred)
    assert scores.shape == (mask_cls.shape[1] - 1,) + tuple(mask_pred.shape[1:])
    assert (scores >= 0).all() and (scores.sum(0) <= mask_cls.shape[0] + 1e-4).all()
