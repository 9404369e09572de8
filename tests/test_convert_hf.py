"""
tools/convert-hf-to-d2.py: a transformers Mask2FormerForUniversalSegmentation checkpoint (Swin
backbone) -> our .pth and config, giving the same class and mask logits as transformers.
"""
import json
import math
import shutil

import pytest
import torch
from detectron2.modeling import build_model
from safetensors.torch import load_file, save_file
from transformers import (
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    Mask2FormerImageProcessor,
    SwinConfig,
)

from mask2former.config import get_maskformer2_cfg
from tool_helpers import ROOT, load_reporting_incompatible, run_tool

NUM_LABELS, QUERIES, DEC_LAYERS = 5, 10, 4
BASE_CONFIG = f"{ROOT}/configs/coco/panoptic-segmentation/swin/maskformer2_swin_tiny_bs16_50ep.yaml"
# Multiples of 32 (no padding) whose 1/32 map (8 x 9) is larger than the Swin window (7), where
# every transformers version uses shifted windows as the published backbone does.
IMAGE_SIZE = (256, 288)


def small_hf_model():
    """A random transformers Mask2Former with a small Swin backbone, every weight perturbed (no
    zero biases, no unit norms) so that each one the conversion misplaces shows."""
    swin = SwinConfig(embed_dim=32, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4], window_size=7,
                      drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(
        backbone_config=swin, feature_size=64, mask_feature_size=64, hidden_dim=64,
        encoder_feedforward_dim=1024, dim_feedforward=128, num_queries=QUERIES,
        decoder_layers=DEC_LAYERS, encoder_layers=2, num_attention_heads=4,
        id2label={i: f"class{i}" for i in range(NUM_LABELS)},
    )
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.dim() == 1 and "norm" in name and name.endswith("weight"):
                param.copy_(1 + 0.2 * noise)
            elif "sampling_offsets" in name:
                param.mul_(0.5).add_(0.05 * noise)
            elif param.dim() == 1:  # biases small enough for the queries to differ
                param.copy_(0.1 * noise)
            else:
                param.copy_(noise / math.sqrt(max(param[0].numel(), 1)))
        # Mask logits of both signs, so that the masked attention blocks some pixels.
        projection = model.model.pixel_level_module.decoder.mask_projection
        projection.weight.sub_(projection.weight.mean(1, keepdim=True))
        projection.bias.zero_()
    return model


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The transformers model, its folder, and our model loaded from the converted files."""
    folder = tmp_path_factory.mktemp("hf")
    hf = small_hf_model()
    hf.save_pretrained(folder / "checkpoint")
    Mask2FormerImageProcessor().save_pretrained(folder / "checkpoint")
    run_tool("convert-hf-to-d2.py", folder / "checkpoint", folder / "m2f.pth",
             "--base-config", BASE_CONFIG)
    cfg = get_maskformer2_cfg(str(folder / "m2f.yaml"), ["MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.WEIGHTS == str(folder / "m2f.pth")
    model = build_model(cfg).eval()
    assert load_reporting_incompatible(model, cfg.MODEL.WEIGHTS) == []
    return hf, folder, model


def test_converted_model_gives_the_transformers_logits(converted):
    hf, _, model = converted
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (2, 3, *IMAGE_SIZE), generator=generator).float()
    pixel_values = (images - model.pixel_mean) / model.pixel_std
    with torch.no_grad():
        expected = hf(pixel_values=pixel_values, output_auxiliary_logits=True)
        ours = model.sem_seg_head(model.backbone(pixel_values))
        predicted = model.predict(pixel_values)  # the inference path (channels-last, oneDNN)
    # The pixel statistics came from preprocessor_config.json (ImageNet's, as published).
    torch.testing.assert_close(model.pixel_mean.flatten(), torch.tensor([123.675, 116.28, 103.53]))

    # The masked attention was exercised: the intermediate masks are partial.
    foreground = torch.stack([(aux["masks_queries_logits"] > 0).float().mean((-2, -1))
                              for aux in expected.auxiliary_logits])
    assert ((foreground > 0.05) & (foreground < 0.95)).any()
    for prediction in (ours, predicted):
        torch.testing.assert_close(prediction["pred_logits"], expected.class_queries_logits,
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(prediction["pred_masks"], expected.masks_queries_logits,
                                   atol=1e-4, rtol=1e-4)
    # The intermediate predictions too (deep supervision reads them).
    for mine, theirs in zip(ours["aux_outputs"], expected.auxiliary_logits):
        torch.testing.assert_close(mine["pred_logits"], theirs["class_queries_logits"],
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mine["pred_masks"], theirs["masks_queries_logits"],
                                   atol=1e-4, rtol=1e-4)


def test_converts_a_weights_file_and_the_config(converted, tmp_path):
    _, folder, model = converted
    shutil.copy(folder / "checkpoint" / "config.json", tmp_path / "config.json")
    shutil.copy(folder / "checkpoint" / "model.safetensors", tmp_path / "weights.safetensors")
    run_tool("convert-hf-to-d2.py", tmp_path / "weights.safetensors", tmp_path / "out.pth",
             "--base-config", BASE_CONFIG)
    state = torch.load(tmp_path / "out.pth", weights_only=True)["model"]
    assert set(state) == set(model.state_dict())
    for name, value in model.state_dict().items():
        assert torch.equal(state[name], value), name
    cfg = get_maskformer2_cfg(str(tmp_path / "out.yaml"))
    assert cfg.MODEL.BACKBONE.NAME == "D2SwinTransformer"
    assert (cfg.MODEL.SWIN.EMBED_DIM, cfg.MODEL.SWIN.DEPTHS, cfg.MODEL.SWIN.WINDOW_SIZE) == (
        32, [2, 2, 2, 2], 7)
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == NUM_LABELS
    assert (cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES, cfg.MODEL.MASK_FORMER.DEC_LAYERS) == (
        QUERIES, DEC_LAYERS)
    # Data and inference settings are the base config's (COCO panoptic).
    assert cfg.MODEL.MASK_FORMER.TEST.PANOPTIC_ON and cfg.INPUT.FORMAT == "RGB"


def test_refuses_what_it_cannot_convert(converted, tmp_path):
    _, folder, _ = converted
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        run_tool("convert-hf-to-d2.py", tmp_path, tmp_path / "out.pth")

    shutil.copytree(folder / "checkpoint", tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    # 5 classes: no published dataset, so the task's config must be given.
    with pytest.raises(ValueError, match="5 classes.*--base-config"):
        run_tool("convert-hf-to-d2.py", tmp_path / "ckpt", tmp_path / "out.pth")
    # A weight missing from the file.
    weights = load_file(tmp_path / "ckpt" / "model.safetensors")
    del weights["model.transformer_module.decoder.layers.0.fc1.weight"]
    save_file(weights, tmp_path / "ckpt" / "model.safetensors")
    with pytest.raises(ValueError, match="missing.*transformer_ffn_layers.0.linear1.weight"):
        run_tool("convert-hf-to-d2.py", tmp_path / "ckpt", tmp_path / "out.pth",
                 "--base-config", BASE_CONFIG)
    # Another backbone.
    config["backbone_config"]["model_type"] = "resnet"
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="backbone_config.model_type='resnet'"):
        run_tool("convert-hf-to-d2.py", tmp_path / "ckpt", tmp_path / "out.pth",
                 "--base-config", BASE_CONFIG)
    assert not (tmp_path / "out.pth").exists()
