"""Mapillary Vistas (semantic, panoptic) and Cityscapes (Detectron2's registrations)."""
import importlib.util

import numpy as np
import pytest
import torch
from data_helpers import (
    Trainer,
    evaluate,
    panoptic_dataset_output,
    panoptic_output,
    registered_at,
    semantic_output,
    train_config,
    train_two_iterations,
)
from data_helpers import datasets_root  # noqa: F401  (fixture)
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from mask2former.data import build_train_mapper


def test_mapillary_metadata(datasets_root):
    sem = MetadataCatalog.get("mapillary_vistas_sem_seg_val")
    pan = MetadataCatalog.get("mapillary_vistas_panoptic_val")
    assert len(sem.stuff_classes) == 65 and sem.ignore_label == 65
    assert len(pan.thing_dataset_id_to_contiguous_id) == 37
    assert pan.thing_dataset_id_to_contiguous_id[20] == 19  # Person: label 19, json id 20
    assert pan.evaluator_type == "mapillary_vistas_panoptic_seg"


def test_mapillary_panoptic_mapper_pads_with_ignore_label(datasets_root, tmp_path):
    cfg = train_config("mapillary_vistas_panoptic_train", "mapillary_vistas_panoptic_val",
                       "mask_former_panoptic", 65, tmp_path)
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 65
    cfg.INPUT.CROP.ENABLED = False
    mapper = build_train_mapper(cfg)
    assert mapper.ignore_label == 65
    for d in DatasetCatalog.get("mapillary_vistas_panoptic_train"):
        out = mapper(d)
        assert sorted(out["instances"].gt_classes.tolist()) == sorted(
            s["category_id"] for s in d["segments_info"])
        assert {s["category_id"] for s in d["segments_info"]} == {27, 13, 19, 55}
    cfg.INPUT.CROP.ENABLED = True
    sem = build_train_mapper(dict_cfg(cfg, "mask_former_semantic",
                                      "mapillary_vistas_sem_seg_train"))
    out = sem(DatasetCatalog.get("mapillary_vistas_sem_seg_train")[0])
    assert (out["sem_seg"][40:] == 65).all()
    assert 65 not in out["instances"].gt_classes.tolist()


def dict_cfg(cfg, mapper, train):
    cfg = cfg.clone()
    cfg.INPUT.DATASET_MAPPER_NAME = mapper
    cfg.DATASETS.TRAIN = (train,)
    return cfg


def test_mapillary_panoptic_train_and_evaluate(datasets_root, tmp_path):
    cfg = train_config("mapillary_vistas_panoptic_train", "mapillary_vistas_panoptic_val",
                       "mask_former_panoptic", 65, tmp_path)
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 65
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    train_two_iterations(cfg)
    evaluator = Trainer.build_evaluator(cfg, "mapillary_vistas_panoptic_val",
                                        str(tmp_path / "eval"))
    res = evaluate(evaluator, "mapillary_vistas_panoptic_val",
                   lambda d: panoptic_dataset_output(d, 65, 65))
    assert res["panoptic_seg"]["PQ"] == pytest.approx(100.0)
    assert res["sem_seg"]["mIoU"] == pytest.approx(100.0)


def test_missing_mapillary_names_path(datasets_root, tmp_path):
    with registered_at(tmp_path / "empty", datasets_root):
        with pytest.raises(FileNotFoundError, match="mapillary_vistas/training/images"):
            DatasetCatalog.get("mapillary_vistas_sem_seg_train")


def test_cityscapes_semantic_train_and_evaluate(datasets_root, tmp_path):
    cfg = train_config("cityscapes_fine_sem_seg_train", "cityscapes_fine_sem_seg_val",
                       "mask_former_semantic", 19, tmp_path)
    d = DatasetCatalog.get("cityscapes_fine_sem_seg_train")[0]
    labels = np.asarray(Image.open(d["sem_seg_file_name"]))
    assert set(np.unique(labels).tolist()) <= {0, 2, 11, 13, 255}  # road building person car
    out = build_train_mapper(cfg)(d)
    assert set(out["instances"].gt_classes.tolist()) <= {0, 2, 11, 13}

    train_two_iterations(cfg)
    evaluator = Trainer.build_evaluator(cfg, "cityscapes_fine_sem_seg_val")
    res = evaluate(evaluator, "cityscapes_fine_sem_seg_val",
                   lambda d: semantic_output(d, 19, 255))
    assert res["sem_seg"]["IoU"] == pytest.approx(100.0)


def test_cityscapes_panoptic_evaluate(datasets_root, tmp_path):
    cfg = train_config("cityscapes_fine_panoptic_train", "cityscapes_fine_panoptic_val",
                       "mask_former_panoptic", 19, tmp_path)
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = False
    cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON = True
    mapper = build_train_mapper(cfg)
    for d in DatasetCatalog.get("cityscapes_fine_panoptic_train"):
        out = mapper(d)
        assert out["instances"].gt_masks.tensor.shape[1:] == out["image"].shape[1:]
    evaluator = Trainer.build_evaluator(cfg, "cityscapes_fine_panoptic_val",
                                        str(tmp_path / "eval"))
    things = set(MetadataCatalog.get("cityscapes_fine_panoptic_val")
                 .thing_dataset_id_to_contiguous_id.values())
    res = evaluate(evaluator, "cityscapes_fine_panoptic_val",
                   lambda d: panoptic_output(d, things))
    assert res["panoptic_seg"]["PQ"] == pytest.approx(100.0)


@pytest.mark.skipif(importlib.util.find_spec("shapely") is None,
                    reason="Detectron2's Cityscapes instance loader needs shapely")
def test_cityscapes_instance_mapper(datasets_root, tmp_path):
    cfg = train_config("cityscapes_fine_instance_seg_train", "cityscapes_fine_instance_seg_val",
                       "mask_former_instance", 8, tmp_path)
    out = build_train_mapper(cfg)(DatasetCatalog.get("cityscapes_fine_instance_seg_train")[0])
    assert torch.isin(out["instances"].gt_classes, torch.tensor([0, 2])).all()
