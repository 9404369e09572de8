"""Checkpoints load through Detectron2's DetectionCheckpointer: model-zoo .pkl and native .pth
files, exactly (checkpoints of another number of classes: test_finetune.py)."""
import logging
import pickle

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from mask2former.checkpoint import MaskFormerCheckpointer, shape_mismatches
from small_model import small_config

LOADING_LOGGERS = ["fvcore.common.checkpoint", "detectron2.checkpoint", "mask2former.checkpoint"]


def config(backbone, num_classes=4):
    cfg = small_config(num_classes=num_classes, num_queries=6, dec_layers=3)
    if backbone == "swin":
        cfg.MODEL.BACKBONE.NAME = "D2SwinTransformer"
        cfg.MODEL.SWIN.EMBED_DIM = 16
        cfg.MODEL.SWIN.DEPTHS = [1, 1, 2, 1]
        cfg.MODEL.SWIN.NUM_HEADS = [1, 1, 2, 2]
        cfg.MODEL.SWIN.WINDOW_SIZE = 4
    return cfg


def build(cfg, seed):
    """Model in eval mode; every persistent float buffer set to seed-dependent values, so that
    a buffer the checkpoint failed to fill (frozen BN statistics, ...) shows up."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    persistent = model.state_dict()
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name in persistent and buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    return model


def predict(model):
    torch.manual_seed(123)
    image = torch.randint(0, 256, (3, 61, 83), dtype=torch.uint8)
    with torch.no_grad():
        return model([{"image": image, "height": 61, "width": 83}])[0]["sem_seg"]


def save_model_zoo_pkl(model, path, matching_heuristics=True):
    """The Detectron2 model-zoo layout: a pickle of numpy arrays (no class names)."""
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "mask2former tests",
                     "matching_heuristics": matching_heuristics}, f)


class Records(logging.Handler):
    """Collects the records (INFO and above) of the checkpoint loggers, however logging is
    configured."""

    def __enter__(self):
        self.records = []
        self.levels = {}
        for name in LOADING_LOGGERS:
            logger = logging.getLogger(name)
            self.levels[name] = logger.level
            logger.setLevel(logging.INFO)
            logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        for name in LOADING_LOGGERS:
            logging.getLogger(name).removeHandler(self)
            logging.getLogger(name).setLevel(self.levels[name])

    def emit(self, record):
        self.records.append(record)

    def warnings(self):
        return [r.getMessage() for r in self.records if r.levelno >= logging.WARNING]


def assert_same_state(a, b, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        if k not in skip:
            assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("backbone", ["resnet", "swin"])
@pytest.mark.parametrize("fmt", ["pkl", "pth"])
def test_checkpoint_loads_exactly(backbone, fmt, tmp_path):
    source = build(config(backbone), seed=0)
    if fmt == "pkl":
        path = str(tmp_path / "model_final.pkl")
        save_model_zoo_pkl(source, path)
    else:
        DetectionCheckpointer(source, str(tmp_path)).save("model_final")
        path = str(tmp_path / "model_final.pth")
    target = build(config(backbone), seed=1)
    assert not torch.equal(predict(source), predict(target))

    with Records() as log:
        DetectionCheckpointer(target).load(path)
    # fvcore / Detectron2 warn about every missing, unexpected or skipped key.
    assert log.warnings() == []
    assert_same_state(source, target)
    assert torch.equal(predict(source), predict(target))


def test_other_shapes_are_named_in_one_warning(tmp_path):
    """Tensors of other shapes than a class count (here: another number of queries) are
    skipped and named, with both shapes, in one warning."""
    source = build(config("resnet"), seed=0)
    path = str(tmp_path / "m.pkl")
    save_model_zoo_pkl(source, path)
    cfg = config("resnet")
    cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = 8
    target = build(cfg, seed=1)
    with Records() as log:
        MaskFormerCheckpointer(target).load(path)
    ours = [r.getMessage() for r in log.records
            if r.name.startswith("mask2former.checkpoint") and r.levelno == logging.WARNING]
    assert len(ours) == 1
    assert f"2 parameters/buffers of the model were NOT loaded from {path} because their " \
           "shapes differ" in ours[0]
    for line in ["sem_seg_head.predictor.query_embed.weight: checkpoint (6, 64), model (8, 64)",
                 "sem_seg_head.predictor.query_feat.weight: checkpoint (6, 64), model (8, 64)"]:
        assert line in ours[0]
    skipped = {"sem_seg_head.predictor.query_embed.weight",
               "sem_seg_head.predictor.query_feat.weight"}
    assert_same_state(source, target, skip=skipped)


def test_no_warning_of_ours_when_everything_loads(tmp_path):
    source = build(config("resnet"), seed=0)
    path = str(tmp_path / "m.pkl")
    save_model_zoo_pkl(source, path)
    with Records() as log:
        MaskFormerCheckpointer(build(config("resnet"), seed=1)).load(path)
    assert log.warnings() == []


def test_shape_mismatches():
    model = {"a": (2, 3), "b": (4,), "c": (1,)}
    assert shape_mismatches(model, {"a": (2, 3), "b": (5,), "d": (7,)}) == [("b", (5,), (4,))]
