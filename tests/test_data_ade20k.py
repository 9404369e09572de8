"""ADE20K semantic / panoptic / instance and ADE20K-Full: prepare, register, map, train, eval."""
import numpy as np
import pytest
import torch
from data_helpers import (
    Trainer,
    evaluate,
    instance_output,
    panoptic_dataset_output,
    registered_at,
    semantic_output,
    train_config,
    train_two_iterations,
)
from data_helpers import datasets_root  # noqa: F401  (fixture)
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator

from mask2former.data import build_train_mapper
from mask2former.data.datasets.ade20k_categories import ADE20K_150_CATEGORIES
from mask2former.test_time_augmentation import SemanticSegmentorWithTTA


def test_metadata_has_the_published_class_lists(datasets_root):
    sem = MetadataCatalog.get("ade20k_sem_seg_val")
    pan = MetadataCatalog.get("ade20k_panoptic_val")
    ins = MetadataCatalog.get("ade20k_instance_val")
    full = MetadataCatalog.get("ade20k_full_sem_seg_val")
    assert len(sem.stuff_classes) == 150 and sem.ignore_label == 255
    assert len(pan.thing_dataset_id_to_contiguous_id) == 100
    assert len(pan.stuff_dataset_id_to_contiguous_id) == 150
    assert len(ins.thing_classes) == 100 and ins.evaluator_type == "coco"
    assert len(full.stuff_classes) == 847 and full.ignore_label == 65535
    assert sem.stuff_classes[:3] == ["wall", "building", "sky"]


def test_prepare_sem_seg_shifts_labels(datasets_root):
    root = datasets_root / "ADEChallengeData2016"
    raw = np.asarray(Image.open(root / "annotations/training/ADE_train_00000001.png"))
    shifted = np.asarray(
        Image.open(root / "annotations_detectron2/training/ADE_train_00000001.png"))
    assert shifted.dtype == np.uint8
    np.testing.assert_array_equal(shifted[raw == 0], 255)
    np.testing.assert_array_equal(shifted[raw > 0], raw[raw > 0] - 1)


def test_prepare_panoptic_and_instance_share_segments(datasets_root):
    pan = {d["image_id"]: d for d in DatasetCatalog.get("ade20k_panoptic_train")}
    ins = {d["image_id"]: d for d in DatasetCatalog.get("ade20k_instance_train")}
    assert pan.keys() == ins.keys()
    for image_id, d in pan.items():
        things = sorted(s["category_id"] for s in d["segments_info"] if s["isthing"])
        stuff = sorted(s["category_id"] for s in d["segments_info"] if not s["isthing"])
        assert stuff == [0, 3]  # wall, floor
        names = MetadataCatalog.get("ade20k_instance_train").thing_classes
        assert sorted(names[a["category_id"]] for a in ins[image_id]["annotations"]) == sorted(
            ADE20K_150_CATEGORIES[c]["name"] for c in things)


def test_semantic_mapper_targets_and_padding(datasets_root, tmp_path):
    cfg = train_config("ade20k_sem_seg_train", "ade20k_sem_seg_val", "mask_former_semantic",
                       150, tmp_path)
    mapper = build_train_mapper(cfg)
    for d in DatasetCatalog.get("ade20k_sem_seg_train"):
        out = mapper(d)
        image, sem_seg, instances = out["image"], out["sem_seg"], out["instances"]
        # 40 x 40 crop padded to a multiple of 32: padding is ignored / gray
        assert image.shape == (3, 64, 64) and sem_seg.shape == (64, 64)
        assert sem_seg.dtype == torch.int64 and (sem_seg[40:] == 255).all()
        assert (image[:, :, 40:] == 128).all()
        classes = [c for c in torch.unique(sem_seg).tolist() if c != 255]
        assert instances.gt_classes.tolist() == classes
        for c, mask in zip(classes, instances.gt_masks.tensor):
            assert torch.equal(mask, sem_seg == c)


def test_annotation_of_wrong_size_names_the_file(datasets_root, tmp_path):
    cfg = train_config("ade20k_sem_seg_train", "ade20k_sem_seg_val", "mask_former_semantic",
                       150, tmp_path)
    d = dict(DatasetCatalog.get("ade20k_sem_seg_train")[0])
    bad = tmp_path / "bad_label.png"
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(bad)
    d["sem_seg_file_name"] = str(bad)
    with pytest.raises(ValueError, match="bad_label.png"):
        build_train_mapper(cfg)(d)


def test_missing_dataset_names_path_and_prepare_script(datasets_root, tmp_path):
    with registered_at(tmp_path / "empty", datasets_root):
        with pytest.raises(FileNotFoundError, match="prepare_ade20k_sem_seg.py") as e:
            DatasetCatalog.get("ade20k_sem_seg_train")
        assert str(tmp_path / "empty" / "ADEChallengeData2016") in str(e.value)
        with pytest.raises(FileNotFoundError, match="prepare_ade20k_pan_seg.py"):
            DatasetCatalog.get("ade20k_panoptic_val")
        with pytest.raises(FileNotFoundError, match="prepare_ade20k_ins_seg.py"):
            DatasetCatalog.get("ade20k_instance_val")
        with pytest.raises(FileNotFoundError, match="prepare_ade20k_full_sem_seg.py"):
            DatasetCatalog.get("ade20k_full_sem_seg_val")


def test_semantic_train_evaluate_and_tta(datasets_root, tmp_path):
    cfg = train_config("ade20k_sem_seg_train", "ade20k_sem_seg_val", "mask_former_semantic",
                       150, tmp_path)
    trainer = train_two_iterations(cfg)

    evaluator = Trainer.build_evaluator(cfg, "ade20k_sem_seg_val")
    assert isinstance(evaluator, SemSegEvaluator)
    res = evaluate(evaluator, "ade20k_sem_seg_val",
                   lambda d: semantic_output(d, 150, 255))
    assert res["sem_seg"]["mIoU"] == pytest.approx(100.0)

    cfg.defrost()
    cfg.TEST.AUG.MIN_SIZES = (32, 48)
    cfg.TEST.AUG.MAX_SIZE = 96
    cfg.TEST.AUG.FLIP = True
    model = SemanticSegmentorWithTTA(cfg, trainer.model.eval())
    image = torch.randint(0, 255, (3, 48, 64), dtype=torch.uint8)
    out = model([{"image": image, "height": 24, "width": 32}])[0]["sem_seg"]
    assert out.shape == (150, 24, 32) and torch.isfinite(out).all()


def test_panoptic_train_and_evaluate(datasets_root, tmp_path):
    cfg = train_config("ade20k_panoptic_train", "ade20k_panoptic_val", "mask_former_panoptic",
                       150, tmp_path)
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = True
    train_two_iterations(cfg)

    meta = MetadataCatalog.get("ade20k_panoptic_val")
    evaluator = Trainer.build_evaluator(cfg, "ade20k_panoptic_val", str(tmp_path / "eval"))
    res = evaluate(evaluator, "ade20k_panoptic_val",
                   lambda d: panoptic_dataset_output(d, 150, 255, instances_meta=meta))
    assert res["panoptic_seg"]["PQ"] == pytest.approx(100.0)
    assert res["sem_seg"]["mIoU"] == pytest.approx(100.0)
    assert res["segm"]["AP"] == pytest.approx(100.0)


def test_instance_mapper_train_and_evaluate(datasets_root, tmp_path):
    cfg = train_config("ade20k_instance_train", "ade20k_instance_val", "mask_former_instance",
                       100, tmp_path)
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = False
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = True
    mapper = build_train_mapper(cfg)
    d = DatasetCatalog.get("ade20k_instance_train")[0]
    out = mapper(d)
    assert out["instances"].gt_masks.tensor.shape[1:] == out["image"].shape[1:]
    empty = mapper(dict(d, annotations=[]))
    assert empty["instances"].gt_masks.tensor.shape == (0,) + tuple(empty["image"].shape[1:])

    train_two_iterations(cfg)
    evaluator = Trainer.build_evaluator(cfg, "ade20k_instance_val", str(tmp_path / "eval"))
    res = evaluate(evaluator, "ade20k_instance_val",
                   lambda d: instance_output(d, d["height"], d["width"]))
    assert res["segm"]["AP"] == pytest.approx(100.0)


def test_ade20k_full_prepare_and_evaluate(datasets_root):
    d = DatasetCatalog.get("ade20k_full_sem_seg_train")[0]
    label = np.asarray(Image.open(d["sem_seg_file_name"]))
    assert label.dtype == np.uint16
    assert set(np.unique(label).tolist()) == {0, 2, 11, 65535}  # wall, sky, person, ignore
    evaluator = SemSegEvaluator("ade20k_full_sem_seg_val", distributed=False)
    res = evaluate(evaluator, "ade20k_full_sem_seg_val",
                   lambda d: semantic_output(d, 847, 65535))
    assert res["sem_seg"]["mIoU"] == pytest.approx(100.0)
