"""MaskFormerHead, MSDeformAttnPixelDecoder and the sine position embedding."""
import ast
import math
from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_resnet_backbone, build_sem_seg_head
from detectron2.projects.deeplab import add_deeplab_config

from mask2former import add_maskformer2_config
from mask2former.modeling.pixel_decoder import build_pixel_decoder
from mask2former.modeling.pixel_decoder.msdeformattn import MSDeformAttnEncoder
from mask2former.modeling.transformer_decoder import PositionEmbeddingSine

# The repo's copy of the published key lists (see its README).
REFERENCE = Path(__file__).parent / "data" / "model_zoo_reference"
R50_COCO_PANOPTIC = "coco__panoptic-segmentation__maskformer2_R50_bs16_50ep.txt"


def reference_cfg(name):
    """Detectron2 defaults + DeepLab + Mask2Former keys, with the published values of ``name``."""
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    values = []
    for line in (REFERENCE / "configs" / name).read_text().splitlines():
        key, value = line.split(": ", 1)
        values += [key, ast.literal_eval(value)]
    cfg.merge_from_list(values)
    return cfg


def reference_keys(name, prefix):
    """(name, shape) of every entry of the published state dict under ``prefix``, in order."""
    keys = []
    for line in (REFERENCE / "state_dict_keys" / name).read_text().splitlines():
        key, shape = line.split(" ", 1)
        if key.startswith(prefix):
            keys.append((key, tuple(ast.literal_eval(shape))))
    return keys


@pytest.fixture(scope="module")
def r50_model():
    cfg = reference_cfg(R50_COCO_PANOPTIC)
    torch.manual_seed(0)
    backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    head = build_sem_seg_head(cfg, backbone.output_shape())
    return backbone.eval(), head.eval()


def test_head_state_dict_matches_published_r50_coco_panoptic(r50_model):
    _, head = r50_model
    ours = [(f"sem_seg_head.{k}", tuple(v.shape)) for k, v in head.state_dict().items()]
    published = reference_keys(R50_COCO_PANOPTIC, "sem_seg_head.")
    assert len(published) > 100
    assert set(ours) == set(published)
    assert ours == published  # same order too


def test_head_forward_on_resnet_features(r50_model):
    backbone, head = r50_model
    with torch.no_grad():
        predictions = head(backbone(torch.randn(1, 3, 64, 96)))
    assert predictions["pred_logits"].shape == (1, 100, 134)
    assert predictions["pred_masks"].shape == (1, 100, 16, 24)
    assert len(predictions["aux_outputs"]) == 9  # DEC_LAYERS 10 predictions in all
    assert all(torch.isfinite(p["pred_masks"]).all() for p in predictions["aux_outputs"])


def small_pixel_decoder_cfg():
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "MSDeformAttnPixelDecoder"
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 32
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = 16
    cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 2
    cfg.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 4
    return cfg


SMALL_SHAPES = {
    "res2": ShapeSpec(channels=8, stride=4),
    "res3": ShapeSpec(channels=16, stride=8),
    "res4": ShapeSpec(channels=24, stride=16),
    "res5": ShapeSpec(channels=40, stride=32),
}


def test_pixel_decoder_outputs_coarse_to_fine():
    torch.manual_seed(0)
    decoder = build_pixel_decoder(small_pixel_decoder_cfg(), SMALL_SHAPES).eval()
    assert decoder.transformer_in_features == ["res5", "res4", "res3"]
    features = {
        name: torch.randn(2, shape.channels, 96 // shape.stride, 64 // shape.stride)
        for name, shape in SMALL_SHAPES.items()
    }
    with torch.no_grad():
        mask_features, encoder_features, multi_scale = decoder.forward_features(features)
    assert mask_features.shape == (2, 16, 24, 16)
    assert [tuple(f.shape) for f in multi_scale] == [(2, 32, 3, 2), (2, 32, 6, 4), (2, 32, 12, 8)]
    assert encoder_features is multi_scale[0]

    # mask features see the fine (res2) input through the FPN step ...
    changed = dict(features, res2=features["res2"] + 1)
    with torch.no_grad():
        assert not torch.allclose(decoder.forward_features(changed)[0], mask_features)
    # ... and the encoder mixes the levels: changing res5 changes the 1/8 output.
    changed = dict(features, res5=features["res5"] + 1)
    with torch.no_grad():
        assert not torch.allclose(decoder.forward_features(changed)[2][2], multi_scale[2])


def test_pixel_decoder_rejects_missing_encoder_features():
    cfg = small_pixel_decoder_cfg()
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res4"]
    with pytest.raises(ValueError, match="DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"):
        build_pixel_decoder(cfg, SMALL_SHAPES)


def test_head_rejects_other_transformer_in_feature():
    cfg = reference_cfg(R50_COCO_PANOPTIC)
    cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE = "res5"
    shapes = {k: ShapeSpec(channels=256, stride=v.stride) for k, v in SMALL_SHAPES.items()}
    with pytest.raises(ValueError, match="TRANSFORMER_IN_FEATURE"):
        build_sem_seg_head(cfg, shapes)


def test_encoder_reference_points_are_pixel_centers():
    points = MSDeformAttnEncoder.reference_points([(2, 3), (1, 1)], 2, 2, "cpu")
    assert points.shape == (2, 7, 2, 2)
    expected = torch.tensor(
        [[1 / 6, 1 / 4], [3 / 6, 1 / 4], [5 / 6, 1 / 4],
         [1 / 6, 3 / 4], [3 / 6, 3 / 4], [5 / 6, 3 / 4],
         [1 / 2, 1 / 2]]
    )
    for b in range(2):
        for level in range(2):
            torch.testing.assert_close(points[b, :, level], expected)


def test_position_embedding_sine_values():
    feats, height, width = 4, 3, 5
    embedding = PositionEmbeddingSine(feats, temperature=10000, normalize=True)
    pos = embedding(torch.zeros(2, 7, height, width))
    assert pos.shape == (2, 2 * feats, height, width)
    for i in range(height):
        for j in range(width):
            y = (i + 1) / height * 2 * math.pi
            x = (j + 1) / width * 2 * math.pi
            expected = []
            for coordinate in (y, x):
                for k in range(feats):
                    angle = coordinate / 10000 ** (2 * (k // 2) / feats)
                    expected.append(math.sin(angle) if k % 2 == 0 else math.cos(angle))
            torch.testing.assert_close(pos[1, :, i, j], torch.tensor(expected), atol=1e-5, rtol=0)
