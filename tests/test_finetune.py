"""
Fine-tuning from a checkpoint trained for another number of classes (mask2former/checkpoint/):
a model-zoo .pkl or a .pth of this project loads into a model of other classes with every weight
but the class head, which keeps the model's initialization or, with
MODEL.MASK_FORMER.CLASS_HEAD_INIT.BY_NAME, starts from the checkpoint's rows of the classes of
the same names; the log says which tensors were not loaded and why, and which row came from
which. Real Detectron2 models, checkpointers, dataset metadata and train_net.py.
"""
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

from mask2former.checkpoint import (
    ClassHeadInit,
    MaskFormerCheckpointer,
    build_class_head_init,
    dataset_class_names,
)
from mask2former.config import get_maskformer2_cfg
from mask2former.data.datasets.generated_shapes import generate_shapes_dataset
from mask2former.engine import check_datasets_registered
from small_model import small_config
from test_checkpoint import Records, save_model_zoo_pkl
from video_helpers import small_video_config

REPO = Path(__file__).resolve().parents[1]
SHAPES_CONFIG = REPO / "configs" / "shapes" / "maskformer2_R18_shapes.yaml"
SHAPES = ["circle", "square", "triangle", "sky", "ground", "water"]
HEAD = ("sem_seg_head.predictor.class_embed.weight", "sem_seg_head.predictor.class_embed.bias")
CLASS_COUNT = HEAD + ("criterion.empty_weight",)
KEY = "MODEL.MASK_FORMER.CLASS_HEAD_INIT"


def tiny(num_classes, video=False):
    """A tiny Mask2Former config (image or video) of ``num_classes`` classes."""
    make = small_video_config if video else small_config
    return make(num_classes=num_classes, num_queries=4, dec_layers=2)


def build(cfg, seed):
    torch.manual_seed(seed)
    return build_model(cfg).eval()


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def save_pth(model, folder, class_names=None):
    """A checkpoint of this project, as training saves it (with the class names)."""
    MaskFormerCheckpointer(model, str(folder), class_names=class_names).save("model_final")
    return str(Path(folder) / "model_final.pth")


def ours(log, level=logging.INFO):
    """The messages of mask2former.checkpoint at ``level`` or above."""
    return [r.getMessage() for r in log.records
            if r.name.startswith("mask2former.checkpoint") and r.levelno >= level]


def assert_loaded_but(loaded, source, skip):
    """Every tensor of ``loaded`` but ``skip`` equals ``source``'s."""
    for k, v in loaded.items():
        if k not in skip:
            assert torch.equal(v, source[k]), k


@pytest.mark.parametrize("fmt", ["pkl", "pkl_no_heuristics", "pth", "pth_ddp"])
def test_other_class_count_loads_all_but_the_class_head(fmt, tmp_path):
    source = build(tiny(4), seed=0)
    path = str(tmp_path / "coco.pkl")
    if fmt.startswith("pkl"):
        save_model_zoo_pkl(source, path, matching_heuristics=fmt == "pkl")
    elif fmt == "pth":
        path = save_pth(source, tmp_path)
    else:  # saved from a DistributedDataParallel model: every key starts with "module."
        path = str(tmp_path / "ddp.pth")
        torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = build(tiny(6), seed=1)
    fresh = state(target)

    with Records() as log:
        MaskFormerCheckpointer(target).load(path)
    # One warning, ours; none of fvcore's per-key "Skip loading parameter" warnings.
    assert log.warnings() == ours(log, logging.WARNING) and len(log.warnings()) == 1
    message = log.warnings()[0]
    assert f"The class head was NOT loaded from {path}: it was trained for 4 classes, the " \
           "model has 6 (MODEL.SEM_SEG_HEAD.NUM_CLASSES)" in message
    for line in ["sem_seg_head.predictor.class_embed.weight: checkpoint (5, 64), model (7, 64)",
                 "sem_seg_head.predictor.class_embed.bias: checkpoint (5,), model (7,)",
                 "criterion.empty_weight: checkpoint (5,), model (7,)"]:
        assert line in message
    loaded = target.state_dict()
    assert_loaded_but(loaded, source.state_dict(), skip=CLASS_COUNT)
    for k in CLASS_COUNT:
        assert torch.equal(loaded[k], fresh[k]), k


def test_checkpoint_of_this_project_stores_its_class_names(tmp_path):
    path = save_pth(build(tiny(6), seed=0), tmp_path, class_names=SHAPES)
    assert torch.load(path, weights_only=True)["class_names"] == SHAPES


def test_by_name_from_the_names_a_checkpoint_of_this_project_stores(tmp_path):
    source = build(tiny(4), seed=0)
    path = save_pth(source, tmp_path, class_names=["cup", "person", "car", "dog"])
    target = build(tiny(3), seed=1)
    fresh = state(target)

    init = ClassHeadInit(["person", "mug", "widget"], pairs=["mug:cup"])
    with Records() as log:
        MaskFormerCheckpointer(target, class_head_init=init).load(path)
    loaded, src = target.state_dict(), source.state_dict()
    assert_loaded_but(loaded, src, skip=CLASS_COUNT)
    for name in HEAD:  # model row <- checkpoint row: person <- person, mug <- cup, no object
        for k, j in [(0, 1), (1, 0), (3, 4)]:
            assert torch.equal(loaded[name][k], src[name][j]), (name, k)
        assert torch.equal(loaded[name][2], fresh[name][2])  # "widget": its initialization
    assert torch.equal(loaded["criterion.empty_weight"], fresh["criterion.empty_weight"])

    message = "\n".join(ours(log))
    assert log.warnings() == []
    assert f"Class head of the model's 3 classes from {path} (4 classes, named by the names " \
           f"it stores), {KEY}.BY_NAME: 3 of 4 rows" in message
    for line in ["  0 person <- 1 person", "  1 mug <- 0 cup", '  3 "no object" <- 4 "no object"',
                 "keep the model's initialization, no class of that name in the checkpoint "
                 f"(add {KEY}.PAIRS for renamed classes): widget",
                 "  criterion.empty_weight: the model's own, not the checkpoint's (5,)"]:
        assert line in message


def test_by_name_from_a_model_zoo_pkl_named_by_registered_metadata(tmp_path):
    """A published COCO panoptic .pkl (133 classes, no names in the file) fine-tuned on the
    shapes dataset: the names of the checkpoint come from coco_2017_train_panoptic's metadata,
    those of the model from DATASETS.TRAIN (shapes_panoptic_train)."""
    coco = MetadataCatalog.get("coco_2017_train_panoptic").stuff_classes
    source = build(tiny(133), seed=0)
    path = str(tmp_path / "model_final_coco.pkl")
    save_model_zoo_pkl(source, path)
    cfg = tiny(6)
    cfg.DATASETS.TRAIN = ("shapes_panoptic_train",)
    cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT.BY_NAME = True
    cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT.WEIGHTS_DATASET = "coco_2017_train_panoptic"
    cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT.PAIRS = ["sky:sky-other-merged", "water:water-other"]
    target = build(cfg, seed=1)
    fresh = state(target)

    with Records() as log:
        MaskFormerCheckpointer(target, class_head_init=build_class_head_init(cfg)).load(path)
    loaded, src = target.state_dict(), source.state_dict()
    assert_loaded_but(loaded, src, skip=CLASS_COUNT)
    sky, water = coco.index("sky-other-merged"), coco.index("water-other")
    for name in HEAD:
        assert torch.equal(loaded[name][3], src[name][sky])
        assert torch.equal(loaded[name][5], src[name][water])
        assert torch.equal(loaded[name][6], src[name][133])
        for k in (0, 1, 2, 4):  # circle, square, triangle, ground: not COCO classes
            assert torch.equal(loaded[name][k], fresh[name][k])
    message = "\n".join(ours(log))
    assert "(133 classes, named by the metadata of 'coco_2017_train_panoptic')" in message
    assert f"  3 sky <- {sky} sky-other-merged" in message
    assert "circle, square, triangle, ground" in message


def test_class_names_of_registered_datasets():
    """Detectron2's COCO instance metadata (thing_classes), this project's COCO panoptic and
    ADE20K semantic (stuff_classes) and the shapes datasets."""
    for dataset, count, first in [("coco_2017_train", 80, "person"),
                                  ("coco_2017_train_panoptic", 133, "person"),
                                  ("ade20k_sem_seg_train", 150, "wall"),
                                  ("shapes_panoptic_train", 6, "circle"),
                                  ("shapes_instance_train", 3, "circle")]:
        names = dataset_class_names(dataset, count, "KEY")
        assert len(names) == count and names[0] == first, dataset


def test_video_model_by_name_from_an_image_checkpoint(tmp_path):
    """As the video main job starts from the image main job: the image model's circle,
    square and triangle rows start the video model's (a model of this project, names stored)."""
    source = build(tiny(6), seed=0)
    path = save_pth(source, tmp_path, class_names=SHAPES)
    video = build(tiny(3, video=True), seed=1)
    MaskFormerCheckpointer(video, class_head_init=ClassHeadInit(SHAPES[:3])).load(path)
    loaded, src = video.state_dict(), source.state_dict()
    assert_loaded_but(loaded, src, skip=CLASS_COUNT)
    for name in HEAD:
        assert torch.equal(loaded[name], src[name][[0, 1, 2, 6]])


def test_resume_loads_the_saved_head_as_is(tmp_path):
    """--resume continues the run's own checkpoint: the mapping of MODEL.WEIGHTS (here from a
    dataset of another class count, which would be an error) does not apply to it."""
    init = ClassHeadInit(SHAPES, weights_dataset="coco_2017_train_panoptic")
    model = build(tiny(6), seed=0)
    MaskFormerCheckpointer(model, str(tmp_path), class_names=SHAPES,
                           class_head_init=init).save("model_0000009")
    resumed = build(tiny(6), seed=1)
    MaskFormerCheckpointer(resumed, str(tmp_path), class_names=SHAPES,
                           class_head_init=init).resume_or_load("", resume=True)
    assert_loaded_but(resumed.state_dict(), model.state_dict(), skip=())


def test_same_class_count_other_names_warns(tmp_path):
    """A head of the same size trained for other classes loads row by row, with a warning."""
    path = save_pth(build(tiny(3), seed=0), tmp_path, class_names=["cat", "dog", "bird"])
    target = build(tiny(3), seed=1)
    with Records() as log:
        MaskFormerCheckpointer(target, class_names=["cat", "dog", "fish"]).load(path)
    assert len(ours(log, logging.WARNING)) == 1
    assert "loads as is, row by row (2: 'bird' (checkpoint) / 'fish' (model)). " \
           f"{KEY}.BY_NAME True matches the rows by name" in ours(log)[0]


@pytest.fixture(scope="module")
def published_pkl(tmp_path_factory):
    """A tiny model of COCO panoptic's 133 classes in the model-zoo .pkl layout."""
    path = tmp_path_factory.mktemp("published") / "model_final.pkl"
    save_model_zoo_pkl(build(tiny(133), seed=0), path)
    return str(path)


@pytest.mark.parametrize("weights_dataset, pairs, error", [
    ("", [], f"does not store the names of its 133 classes .*set {KEY}.WEIGHTS_DATASET to the "
             "registered dataset it was trained on, e.g. 'coco_2017_train_panoptic'"),
    ("coco_2017_train", [], rf"{KEY}.WEIGHTS_DATASET: the metadata of the dataset "
                            r"'coco_2017_train' lists no 133 class names \(it has thing_classes "
                            "of 80 names"),
    ("coco_2017_train_panoptic", ["sky:sky"],
     rf"{KEY}.PAIRS names 'sky' as a class of MODEL.WEIGHTS, which has no class of that name\. "
     "Did you mean 'sky-other-merged'.* Its classes are: 'person', 'bicycle'"),
])
def test_bad_mapping_is_an_error_before_anything_loads(published_pkl, weights_dataset, pairs,
                                                       error):
    target = build(tiny(6), seed=1)
    fresh = state(target)
    init = ClassHeadInit(SHAPES, weights_dataset=weights_dataset, pairs=pairs)
    with pytest.raises(ValueError, match=error):
        MaskFormerCheckpointer(target, class_head_init=init).load(published_pkl)
    assert_loaded_but(target.state_dict(), fresh, skip=())


@pytest.mark.parametrize("keys, error", [
    ({"PAIRS": ["mug=cup"]}, rf"{KEY}.PAIRS: 'mug=cup' is not of the form '<class of "
                             "DATASETS.TRAIN>:<class of MODEL.WEIGHTS>'"),
    ({"PAIRS": ["mug:cup"]}, rf"{KEY}.PAIRS: 'mug:cup' pairs 'mug', which is not a class of the "
                             "model .*its classes are: 'circle', 'square', 'triangle', 'sky'"),
    ({"PAIRS": ["sky:a", "sky:b"]}, rf"{KEY}.PAIRS pairs 'sky' twice"),
    ({"BY_NAME": False, "PAIRS": ["sky:sky-other-merged"]},
     rf"{KEY}.PAIRS is set .* but {KEY}.BY_NAME is False"),
    ({"TRAIN": ("shapes_instance_train",)},
     rf"{KEY}.BY_NAME \(the model's classes are those of DATASETS.TRAIN\[0\]\): the metadata "
     r"of the dataset 'shapes_instance_train' lists no 6 class names \(it has thing_classes of "
     "3 names\\)"),
])
def test_bad_config_is_an_error_naming_the_key(keys, error):
    cfg = tiny(6)
    cfg.DATASETS.TRAIN = keys.pop("TRAIN", ("shapes_panoptic_train",))
    cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT.BY_NAME = True
    cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT.update(keys)
    with pytest.raises(ValueError, match=error):
        build_class_head_init(cfg)


def test_unregistered_weights_dataset_is_an_error_at_setup():
    cfg = get_maskformer2_cfg(SHAPES_CONFIG, [
        f"{KEY}.BY_NAME", "True", f"{KEY}.WEIGHTS_DATASET", "coco_2017_train_panoptc"])
    with pytest.raises(KeyError, match=rf"{KEY}.WEIGHTS_DATASET names the dataset "
                                       r"'coco_2017_train_panoptc', which is not registered\. "
                                       r"Did you mean 'coco_2017_train_panoptic'"):
        check_datasets_registered(cfg)


def test_train_net_fine_tunes_the_shapes_model_from_a_coco_panoptic_pkl(tmp_path):
    """train_net.py, as a user runs it: the shapes config (6 classes) from a .pkl of the same
    architecture trained for COCO panoptic's 133 classes, class head rows by name."""
    generate_shapes_dataset(str(tmp_path / "datasets" / "generated" / "shapes"), seed=0,
                            num_train=4, num_val=1, size=64)
    cfg = get_maskformer2_cfg(SHAPES_CONFIG, ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "133"])
    save_model_zoo_pkl(build(cfg, seed=0), tmp_path / "coco.pkl")
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path / "datasets"), OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), "--config-file", str(SHAPES_CONFIG),
         "MODEL.WEIGHTS", str(tmp_path / "coco.pkl"), f"{KEY}.BY_NAME", "True",
         f"{KEY}.WEIGHTS_DATASET", "coco_2017_train_panoptic",
         f"{KEY}.PAIRS", "['sky:sky-other-merged', 'water:water-other', 'ground:dirt-merged']",
         "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
         "INPUT.IMAGE_SIZE", "64", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256",
         "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "False", "MODEL.MASK_FORMER.TEST.PANOPTIC_ON",
         "False", "OUTPUT_DIR", str(tmp_path / "out")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "Class head of the model's 6 classes from" in log
    assert "named by the metadata of 'coco_2017_train_panoptic'), " \
           f"{KEY}.BY_NAME: 4 of 7 rows" in log
    assert "NOT loaded" not in log
    final = torch.load(tmp_path / "out" / "model_final.pth", weights_only=True)
    assert final["class_names"] == SHAPES
