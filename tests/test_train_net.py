"""train_net.py: setup from a yaml file, AMP on a CPU-only machine, --eval-only, evaluators."""
from pathlib import Path

import pytest
import torch
from data_helpers import REPO, train_config
from data_helpers import datasets_root  # noqa: F401  (fixture)
from test_model_zoo_configs import REFERENCE, read_key_values

import train_net
from detectron2.engine import default_argument_parser
from mask2former.engine import disable_amp_without_cuda


def test_eval_only_from_yaml_with_amp_and_tta(datasets_root, tmp_path):
    cfg = train_config("ade20k_sem_seg_train", "ade20k_sem_seg_val", "mask_former_semantic",
                       150, tmp_path / "out")
    cfg.SOLVER.AMP.ENABLED = True
    cfg.MODEL.DEVICE = "cuda"
    cfg.TEST.AUG.ENABLED = True
    cfg.TEST.AUG.MIN_SIZES = (32,)
    cfg.TEST.AUG.MAX_SIZE = 64
    config_file = tmp_path / "config.yaml"
    config_file.write_text(cfg.dump())
    args = default_argument_parser().parse_args(
        ["--config-file", str(config_file), "--eval-only", "MODEL.WEIGHTS", ""])
    res = train_net.main(args)
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "SOLVER.AMP.ENABLED is True but CUDA is not used" in log
    assert set(res) == {"sem_seg", "sem_seg_TTA"}
    assert 0.0 <= res["sem_seg"]["mIoU"] <= 100.0


def test_amp_left_on_with_cuda_device_available(monkeypatch):
    cfg = train_config("ade20k_sem_seg_train", "ade20k_sem_seg_val", "mask_former_semantic",
                       150, "out")
    cfg.SOLVER.AMP.ENABLED = True
    cfg.MODEL.DEVICE = "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    disable_amp_without_cuda(cfg)
    assert cfg.SOLVER.AMP.ENABLED


def test_unknown_evaluator_type_is_an_error(datasets_root, tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    DatasetCatalog.register("no_evaluator_dataset", lambda: [])
    MetadataCatalog.get("no_evaluator_dataset").set(evaluator_type="lvis_something")
    try:
        cfg = train_config("ade20k_sem_seg_train", "ade20k_sem_seg_val",
                           "mask_former_semantic", 150, tmp_path)
        with pytest.raises(NotImplementedError, match="no_evaluator_dataset"):
            train_net.Trainer.build_evaluator(cfg, "no_evaluator_dataset")
    finally:
        DatasetCatalog.remove("no_evaluator_dataset")
        MetadataCatalog.remove("no_evaluator_dataset")


def test_unknown_mapper_name_is_an_error(tmp_path):
    from mask2former.data import build_train_mapper

    cfg = train_config("ade20k_sem_seg_train", "ade20k_sem_seg_val", "mask_former_semantic",
                       150, tmp_path)
    cfg.INPUT.DATASET_MAPPER_NAME = "detr_panoptic"
    with pytest.raises(KeyError, match="detr_panoptic"):
        build_train_mapper(cfg)


def test_train_net_is_the_repo_script():
    assert train_net.__file__ == str(REPO / "train_net.py")


def _reference_configs():
    """{config name: {key: value}} of every published config (the repo's reference copy)."""
    folder = Path(REFERENCE) / "configs"
    return {path.stem: read_key_values(path) for path in sorted(folder.glob("*__*.txt"))}


def test_published_configs_find_their_datasets_mappers_and_evaluators(datasets_root, tmp_path):
    """Every published config's datasets are registered, its mapper exists, and
    Trainer.build_evaluator builds the evaluators of its test set with its TEST flags."""
    from detectron2.data import DatasetCatalog

    from mask2former.data import DATASET_MAPPERS

    configs = _reference_configs()
    assert len(configs) == 47
    for name, values in configs.items():
        for dataset in values["DATASETS.TRAIN"] + values["DATASETS.TEST"]:
            assert dataset in DatasetCatalog.list(), (name, dataset)
        assert values.get("INPUT.DATASET_MAPPER_NAME", "mask_former_semantic") in DATASET_MAPPERS
        cfg = train_config(values["DATASETS.TRAIN"][0], values["DATASETS.TEST"][0],
                           "mask_former_semantic", 10, tmp_path)
        for key, value in values.items():
            if key.startswith("MODEL.MASK_FORMER.TEST."):
                setattr(cfg.MODEL.MASK_FORMER.TEST, key.rsplit(".", 1)[1], value)
        evaluator = train_net.Trainer.build_evaluator(cfg, values["DATASETS.TEST"][0],
                                                      str(tmp_path / "eval"))
        assert evaluator is not None, name
