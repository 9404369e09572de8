"""tools/convert-*.py: torchvision ResNet and Swin release checkpoints -> Detectron2 .pkl files
that load into Detectron2's ResNet / D2SwinTransformer exactly."""
import pickle

import numpy as np
import pytest
import torch
import torchvision
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.resnet import build_resnet_backbone

from mask2former.modeling.backbone.swin import D2SwinTransformer
from tool_helpers import load_reporting_incompatible, run_tool


def randomize_bn_statistics(model):
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_resnet_round_trip(depth, tmp_path):
    torch.manual_seed(0)
    tv = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    randomize_bn_statistics(tv)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    run_tool("convert-torchvision-to-d2.py", tmp_path / "tv.pth", tmp_path / "R.pkl")

    with open(tmp_path / "R.pkl", "rb") as f:
        converted = pickle.load(f)
    assert converted["__author__"] == "torchvision" and converted["matching_heuristics"] is True
    assert all(isinstance(v, np.ndarray) for v in converted["model"].values())
    assert "stem.conv1.norm.running_var" in converted["model"]
    assert not any(k.startswith(("fc", "stem.fc")) for k in converted["model"])

    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64 if depth < 50 else 256
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    d2 = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    problems = load_reporting_incompatible(d2, tmp_path / "R.pkl")
    assert problems == []
    assert set(converted["model"]) == set(d2.state_dict())

    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        stem = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        expected = tv.layer4(tv.layer3(tv.layer2(tv.layer1(stem))))
        torch.testing.assert_close(d2(x)["res5"], expected, rtol=1e-4, atol=1e-4)


def swin_release_state_dict(model):
    """What the Swin release checkpoint of ``model``'s architecture holds: no per-stage norms,
    a final norm and classifier, and the attention masks of the shifted blocks."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("norm")}
    dim = model.layers[-1].blocks[0].norm1.weight.shape[0]
    state["norm.weight"], state["norm.bias"] = torch.randn(dim), torch.randn(dim)
    state["head.weight"], state["head.bias"] = torch.randn(10, dim), torch.randn(10)
    for i, layer in enumerate(model.layers):
        state[f"layers.{i}.blocks.1.attn_mask"] = torch.zeros(4, 16, 16)
    return state


def test_swin_release_round_trip(tmp_path):
    args = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4)
    torch.manual_seed(0)
    source = D2SwinTransformer(**args)
    torch.save({"model": swin_release_state_dict(source)}, tmp_path / "swin.pth")
    run_tool("convert-pretrained-swin-model-to-d2.py", tmp_path / "swin.pth", tmp_path / "swin.pkl")

    with open(tmp_path / "swin.pkl", "rb") as f:
        converted = pickle.load(f)
    assert converted["matching_heuristics"] is True
    assert all(isinstance(v, np.ndarray) for v in converted["model"].values())
    assert not any(k.startswith(("head", "norm.")) or "attn_mask" in k for k in converted["model"])

    torch.manual_seed(1)
    target = D2SwinTransformer(**args)
    problems = load_reporting_incompatible(target, tmp_path / "swin.pkl")
    # Only the per-stage output norms are new in the backbone: reported missing, nothing else.
    assert len(problems) == 1 and "not found in the checkpoint" in problems[0], problems
    assert "norm0" in problems[0] and "unused" not in problems[0]
    for k, v in source.state_dict().items():
        if not k.startswith("norm"):
            assert torch.equal(target.state_dict()[k], v), k


def test_converters_reject_other_checkpoints(tmp_path):
    torch.save({"model": {"patch_embed.proj.weight": torch.zeros(1)}}, tmp_path / "swin.pth")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "tv.pth")
    with pytest.raises(ValueError, match="swin.pth: not a torchvision ResNet state dict"):
        run_tool("convert-torchvision-to-d2.py", tmp_path / "swin.pth", tmp_path / "o.pkl")
    with pytest.raises(ValueError, match="tv.pth: not a Swin Transformer checkpoint"):
        run_tool("convert-pretrained-swin-model-to-d2.py", tmp_path / "tv.pth", tmp_path / "o.pkl")
    assert not (tmp_path / "o.pkl").exists()
