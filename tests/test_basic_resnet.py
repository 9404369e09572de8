"""build_basic_resnet_backbone: Detectron2's ResNet-18/34 at any width."""
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

import mask2former  # noqa: F401  (registers the backbone)


def _cfg(name, depth, width):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = width
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = width
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    return cfg


@pytest.mark.parametrize("depth", [18, 34])
def test_same_parameters_as_detectron2_resnet_at_width_64(depth):
    ours = build_backbone(_cfg("build_basic_resnet_backbone", depth, 64))
    reference = build_backbone(_cfg("build_resnet_backbone", depth, 64))
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


def test_half_width_features():
    backbone = build_backbone(_cfg("build_basic_resnet_backbone", 18, 32))
    features = backbone(torch.randn(2, 3, 64, 96))
    for (name, stride, channels) in zip(["res2", "res3", "res4", "res5"], [4, 8, 16, 32],
                                        [32, 64, 128, 256]):
        assert features[name].shape == (2, channels, 64 // stride, 96 // stride)
        assert backbone.output_shape()[name] == ShapeSpec(channels=channels, stride=stride)


def test_bottleneck_depth_is_refused():
    with pytest.raises(ValueError, match="DEPTH must be 18 or 34"):
        build_backbone(_cfg("build_basic_resnet_backbone", 50, 64))
