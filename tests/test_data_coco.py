"""COCO panoptic (+ semantic from panoptic) and instance: prepare, register, map, train, eval."""
import numpy as np
import pytest
import torch
from data_helpers import (
    Trainer,
    evaluate,
    instance_output,
    panoptic_dataset_output,
    panoptic_output,
    registered_at,
    train_config,
    train_two_iterations,
)
from data_helpers import datasets_root  # noqa: F401  (fixture)
from panopticapi.utils import rgb2id
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from mask2former.data import build_train_mapper


def test_panoptic_metadata(datasets_root):
    meta = MetadataCatalog.get("coco_2017_val_panoptic_with_sem_seg")
    assert meta.evaluator_type == "coco_panoptic_seg" and meta.ignore_label == 255
    assert len(meta.stuff_classes) == 133 and len(meta.thing_dataset_id_to_contiguous_id) == 80
    assert meta.thing_dataset_id_to_contiguous_id[1] == 0  # person
    assert meta.json_file.endswith("instances_val2017.json")
    assert MetadataCatalog.get("coco_2017_train").evaluator_type == "coco"


def test_prepare_semantic_from_panoptic(datasets_root):
    contiguous = {c["id"]: i for i, c in enumerate(COCO_CATEGORIES)}
    for d in DatasetCatalog.get("coco_2017_val_panoptic_with_sem_seg"):
        sem = np.asarray(Image.open(d["sem_seg_file_name"]))
        pan = rgb2id(np.asarray(Image.open(d["pan_seg_file_name"])))
        assert sem.dtype == np.uint8 and sem.shape == pan.shape
        for s in d["segments_info"]:
            assert (sem[pan == s["id"]] == s["category_id"]).all()
        assert (sem[pan == 0] == 255).all()
        assert set(np.unique(sem).tolist()) <= set(contiguous.values()) | {255}


def test_panoptic_lsj_mapper_handles_images_without_segments(datasets_root, tmp_path):
    cfg = train_config("coco_2017_train_panoptic", "coco_2017_val_panoptic_with_sem_seg",
                       "coco_panoptic_lsj", 133, tmp_path)
    mapper = build_train_mapper(cfg)
    dicts = DatasetCatalog.get("coco_2017_train_panoptic")
    assert not dicts[-1]["segments_info"]
    for d in dicts:
        out = mapper(d)
        assert out["image"].shape == (3, 64, 64)
        masks = out["instances"].gt_masks.tensor
        assert masks.shape[1:] == (64, 64) and len(masks) == len(out["instances"].gt_classes)
    assert len(out["instances"]) == 0


def test_instance_lsj_mapper_rasterizes_polygons(datasets_root, tmp_path):
    cfg = train_config("coco_2017_train", "coco_2017_val", "coco_instance_lsj", 80, tmp_path,
                       MIN_SCALE=1.0, MAX_SCALE=1.0)
    mapper = build_train_mapper(cfg)
    d = DatasetCatalog.get("coco_2017_train")[0]
    out = mapper(d)
    assert out["image"].shape == (3, 64, 64)
    # scale 1: the 48 x 64 image fits the 64 x 64 square unchanged (maybe flipped)
    assert sorted(out["instances"].gt_classes.tolist()) == sorted(
        a["category_id"] for a in d["annotations"])
    areas = sorted(int(m.sum()) for m in out["instances"].gt_masks.tensor)
    assert areas == sorted(int(a["bbox"][2] * a["bbox"][3]) for a in d["annotations"])
    empty = mapper(dict(d, annotations=[]))
    assert empty["instances"].gt_masks.tensor.shape == (0, 64, 64)


def test_panoptic_train_and_evaluate(datasets_root, tmp_path):
    cfg = train_config("coco_2017_train_panoptic", "coco_2017_val_panoptic_with_sem_seg",
                       "coco_panoptic_lsj", 133, tmp_path)
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = True
    train_two_iterations(cfg)

    name = "coco_2017_val_panoptic_with_sem_seg"
    meta = MetadataCatalog.get(name)
    evaluator = Trainer.build_evaluator(cfg, name, str(tmp_path / "eval"))
    res = evaluate(evaluator, name,
                   lambda d: panoptic_dataset_output(d, 133, 255, instances_meta=meta))
    assert res["panoptic_seg"]["PQ"] == pytest.approx(100.0)
    assert res["sem_seg"]["mIoU"] == pytest.approx(100.0)
    assert res["segm"]["AP"] == pytest.approx(100.0)


def test_panoptic_evaluator_sees_wrong_predictions(datasets_root, tmp_path):
    cfg = train_config("coco_2017_train_panoptic", "coco_2017_val_panoptic", "coco_panoptic_lsj",
                       133, tmp_path)
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = False
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    evaluator = Trainer.build_evaluator(cfg, "coco_2017_val_panoptic", str(tmp_path / "eval"))

    def shifted_classes(d):
        pan, segments = panoptic_output(d)["panoptic_seg"]
        wrong = [dict(s, category_id=(s["category_id"] + 1) % 80, isthing=True)
                 if s["isthing"] else s for s in segments]
        return {"panoptic_seg": (pan, wrong)}

    res = evaluate(evaluator, "coco_2017_val_panoptic", shifted_classes)
    assert res["panoptic_seg"]["PQ_th"] == pytest.approx(0.0)
    assert res["panoptic_seg"]["PQ_st"] == pytest.approx(100.0)


def test_instance_train_and_evaluate(datasets_root, tmp_path):
    cfg = train_config("coco_2017_train", "coco_2017_val", "coco_instance_lsj", 80, tmp_path)
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = False
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = True
    train_two_iterations(cfg)
    evaluator = Trainer.build_evaluator(cfg, "coco_2017_val", str(tmp_path / "eval"))
    res = evaluate(evaluator, "coco_2017_val",
                   lambda d: instance_output(d, d["height"], d["width"]))
    assert res["segm"]["AP"] == pytest.approx(100.0)
    assert res["bbox"]["AP"] == pytest.approx(100.0)


def test_missing_coco_panoptic_names_path_and_prepare_script(datasets_root, tmp_path):
    with registered_at(tmp_path / "empty", datasets_root):
        with pytest.raises(FileNotFoundError, match="prepare_coco_semantic_annos_from_panoptic"):
            DatasetCatalog.get("coco_2017_val_panoptic_with_sem_seg")


def test_panoptic_annotation_of_wrong_size_names_the_file(datasets_root, tmp_path):
    cfg = train_config("coco_2017_train_panoptic", "coco_2017_val_panoptic", "coco_panoptic_lsj",
                       133, tmp_path)
    d = dict(DatasetCatalog.get("coco_2017_train_panoptic")[0])
    bad = tmp_path / "bad_panoptic.png"
    Image.fromarray(np.zeros((5, 7, 3), dtype=np.uint8)).save(bad)
    d["pan_seg_file_name"] = str(bad)
    with pytest.raises(ValueError, match="bad_panoptic.png"):
        build_train_mapper(cfg)(d)
    assert torch.is_tensor(build_train_mapper(cfg)(DatasetCatalog.get(
        "coco_2017_train_panoptic")[0])["image"])
