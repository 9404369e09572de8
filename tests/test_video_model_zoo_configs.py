"""
Video model zoo: every published YouTube-VIS config merges to the published values, and the
model built from it has exactly the published state_dict names and shapes (reference lists in
tests/data/model_zoo_reference/video/, copied from the published model zoo's facts).
"""
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.projects.deeplab import add_deeplab_config
from test_model_zoo_configs import (
    ROOT,
    config_problems,
    flatten,
    read_key_values,
    read_state_dict_keys,
    same,
)

import mask2former_video  # noqa: F401  registers the video model and datasets
from mask2former import add_maskformer2_config
from mask2former_video import add_maskformer2_video_config, get_maskformer2_video_cfg

REFERENCE = os.path.join(ROOT, "tests", "data", "model_zoo_reference", "video")
CONFIGS = sorted(
    f[: -len(".txt")] for f in os.listdir(os.path.join(REFERENCE, "configs"))
    if not f.startswith("_")
)


def config_path(name):
    return os.path.join(ROOT, "configs", name.replace("__", "/") + ".yaml")


def default_config(video=True):
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    if video:
        add_maskformer2_video_config(cfg)
    return cfg


def test_twelve_published_video_configs():
    assert len(CONFIGS) == 12
    assert all(os.path.isfile(config_path(name)) for name in CONFIGS)


def test_add_maskformer2_video_config_has_the_published_defaults():
    before = flatten(default_config(video=False))
    added = {k: v for k, v in flatten(default_config()).items() if k not in before}
    expected = read_key_values(os.path.join(REFERENCE, "configs", "_video_defaults.txt"))
    assert sorted(added) == sorted(expected)
    assert all(same(added[k], expected[k]) for k in expected), (added, expected)


@pytest.mark.parametrize("name", CONFIGS)
def test_video_config_merges_to_the_published_values(name):
    defaults = flatten(default_config())
    merged = flatten(get_maskformer2_video_cfg(config_path(name)))
    merged["MODEL.DEVICE"] = defaults["MODEL.DEVICE"]  # the loader's CPU fallback
    expected = read_key_values(os.path.join(REFERENCE, "configs", name + ".txt"))
    problems = config_problems(merged, defaults, expected)
    assert not problems, f"{config_path(name)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", CONFIGS)
def test_video_model_has_the_published_state_dict(name):
    cfg = get_maskformer2_video_cfg(config_path(name))
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):
        model = build_model(cfg)
    assert type(model).__name__ == "VideoMaskFormer"
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    expected = read_state_dict_keys(name, REFERENCE)
    assert ours == expected, (
        f"{name}: missing {sorted(set(expected) - set(ours))[:5]}, "
        f"unexpected {sorted(set(ours) - set(expected))[:5]}"
    )


def test_coco_instance_checkpoint_fits_the_video_model_but_the_class_head():
    """The published video models start from the COCO instance checkpoint of their backbone:
    every name and shape is shared except the class head (81 vs 41 classes)."""
    image = dict(read_state_dict_keys("coco__instance-segmentation__maskformer2_R50_bs16_50ep"))
    video = dict(read_state_dict_keys("youtubevis_2019__video_maskformer2_R50_bs16_8ep",
                                      REFERENCE))
    assert image.keys() == video.keys()
    assert {k for k in image if image[k] != video[k]} == {
        "sem_seg_head.predictor.class_embed.weight", "sem_seg_head.predictor.class_embed.bias",
        "criterion.empty_weight"}
