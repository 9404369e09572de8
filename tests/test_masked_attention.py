"""Masked attention and the layer schedule of MultiScaleMaskedTransformerDecoder."""
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.projects.deeplab import add_deeplab_config

from mask2former import add_maskformer2_config
from mask2former.modeling.transformer_decoder import (
    MultiScaleMaskedTransformerDecoder,
    build_transformer_decoder,
)

HIDDEN, HEADS, QUERIES, BATCH = 32, 4, 4, 2
LEVEL_SIZES = [(4, 4), (8, 8), (16, 16)]  # 1/32, 1/16, 1/8 of a 128 x 128 image
MASK_SIZE = (32, 32)  # 1/4


def small_decoder(dec_layers=3):
    torch.manual_seed(0)
    decoder = MultiScaleMaskedTransformerDecoder(
        in_channels=HIDDEN,
        num_classes=5,
        hidden_dim=HIDDEN,
        num_queries=QUERIES,
        nheads=HEADS,
        dim_feedforward=64,
        dec_layers=dec_layers,
        pre_norm=False,
        mask_dim=HIDDEN,
        enforce_input_project=False,
    )
    return decoder.eval()


def random_features(seed=1):
    generator = torch.Generator().manual_seed(seed)
    features = [torch.randn(BATCH, HIDDEN, h, w, generator=generator) for h, w in LEVEL_SIZES]
    mask_features = torch.randn(BATCH, HIDDEN, *MASK_SIZE, generator=generator)
    return features, mask_features


class CrossAttentionRecorder:
    """Records the attention mask given to, and the output of, each cross-attention layer."""

    def __init__(self, decoder):
        self.masks, self.outputs, self.memory_lengths = {}, {}, {}
        self.handles = [
            layer.register_forward_hook(self._hook(i), with_kwargs=True)
            for i, layer in enumerate(decoder.transformer_cross_attention_layers)
        ]

    def _hook(self, index):
        def hook(module, args, kwargs, output):
            self.masks[index] = kwargs["memory_mask"]
            self.memory_lengths[index] = args[1].shape[1]
            self.outputs[index] = output

        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


def run(decoder, features, mask_features):
    recorder = CrossAttentionRecorder(decoder)
    with torch.no_grad():
        predictions = decoder(features, mask_features)
    recorder.remove()
    return predictions, recorder


def designed_mask_features(decoder):
    """
    Mask features for which the prediction before the first layer is, for every image:
    query 0 foreground on the left half, query 1 empty, query 2 everywhere, query 3 top half.
    """
    with torch.no_grad():
        embed = decoder.mask_embed(decoder.decoder_norm(decoder.query_feat.weight))  # (Q, C)
    height, width = MASK_SIZE
    target = torch.full((QUERIES, height, width), -4.0)
    target[0, :, : width // 2] = 4.0
    target[2] = 4.0
    target[3, : height // 2] = 4.0
    features = torch.linalg.pinv(embed) @ target.flatten(1)  # (C, HW)
    features = features.view(1, HIDDEN, height, width).expand(BATCH, -1, -1, -1).contiguous()
    with torch.no_grad():
        first = decoder.forward_prediction_heads(decoder.query_feat.weight[None], features[:1])
    torch.testing.assert_close(first["pred_masks"][0], target, atol=1e-3, rtol=0)
    return features


def test_first_layer_attention_mask_is_the_initial_prediction_thresholded():
    decoder = small_decoder()
    features, _ = random_features()
    mask_features = designed_mask_features(decoder)
    _, recorder = run(decoder, features, mask_features)

    mask = recorder.masks[0].view(BATCH, HEADS, QUERIES, *LEVEL_SIZES[0])
    assert torch.equal(mask, mask[:, :1].expand_as(mask))  # same for every head
    right_half = torch.zeros(LEVEL_SIZES[0], dtype=torch.bool)
    right_half[:, 2:] = True
    bottom_half = torch.zeros(LEVEL_SIZES[0], dtype=torch.bool)
    bottom_half[2:] = True
    for b in range(BATCH):
        assert torch.equal(mask[b, 0, 0], right_half)
        assert not mask[b, 0, 1].any()  # empty mask: attends everywhere
        assert not mask[b, 0, 2].any()  # full mask
        assert torch.equal(mask[b, 0, 3], bottom_half)


def test_query_with_empty_mask_attends_everywhere():
    decoder = small_decoder()
    features, _ = random_features()
    mask_features = designed_mask_features(decoder)
    _, base = run(decoder, features, mask_features)

    for columns in (slice(0, 2), slice(2, 4)):  # left half, then right half
        changed = [f.clone() for f in features]
        changed[0][..., columns] += 3 * torch.randn_like(changed[0][..., columns])
        _, after = run(decoder, changed, mask_features)
        difference = (after.outputs[0] - base.outputs[0]).abs().amax(-1)  # (B, Q)
        assert torch.all(difference[:, 1] > 1e-3), "the empty-mask query must see every pixel"
        assert torch.all(difference[:, 2] > 1e-3)
        if columns.start == 0:
            assert torch.all(difference[:, 0] > 1e-3)  # query 0 sees its left half


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_cross_attention_ignores_features_outside_the_predicted_mask(layer):
    decoder = small_decoder()
    features, mask_features = random_features()
    _, base = run(decoder, features, mask_features)

    # Layer i reads level i (first round); its mask comes from the previous prediction, which
    # does not depend on this level. Pick the query whose allowed region is closest to half.
    blocked = base.masks[layer].view(BATCH, HEADS, QUERIES, -1)[:, 0]  # (B, Q, HW)
    fraction = blocked.float().mean(-1)
    b, q = divmod(int((fraction - 0.5).abs().flatten().argmin()), QUERIES)
    assert 0 < fraction[b, q] < 1, "test setup: need a query with a partial mask"

    changed = [f.clone() for f in features]
    level = changed[layer].flatten(2)  # view into (B, C, h * w)
    outside = blocked[b, q]
    level[b, :, outside] += 5 * torch.randn(HIDDEN, int(outside.sum()))
    _, after = run(decoder, changed, mask_features)

    assert torch.equal(after.masks[layer], base.masks[layer])
    torch.testing.assert_close(after.outputs[layer][b, q], base.outputs[layer][b, q],
                               atol=1e-5, rtol=0)
    # The change is visible to queries that are allowed to look there.
    allowed_there = ~blocked[b][:, outside].all(-1)
    assert allowed_there.any()
    difference = (after.outputs[layer][b] - base.outputs[layer][b]).abs().amax(-1)
    assert torch.all(difference[allowed_there] > 1e-4)


def test_layers_read_scales_round_robin_and_predict_dec_layers_times():
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.SEM_SEG_HEAD.MASK_DIM = HIDDEN
    cfg.MODEL.MASK_FORMER.HIDDEN_DIM = HIDDEN
    cfg.MODEL.MASK_FORMER.NHEADS = HEADS
    cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES = QUERIES
    cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD = 64
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 6
    decoder = build_transformer_decoder(cfg, HIDDEN).eval()
    assert len(decoder.transformer_cross_attention_layers) == 5

    features, mask_features = random_features()
    predictions, recorder = run(decoder, features, mask_features)

    lengths = [h * w for h, w in LEVEL_SIZES]
    assert [recorder.memory_lengths[i] for i in range(5)] == [lengths[i % 3] for i in range(5)]
    for i in range(5):
        assert recorder.masks[i].shape == (BATCH * HEADS, QUERIES, lengths[i % 3])

    assert len(predictions["aux_outputs"]) == 5  # + the final prediction = DEC_LAYERS
    for prediction in predictions["aux_outputs"] + [predictions]:
        assert prediction["pred_logits"].shape == (BATCH, QUERIES, 6)
        assert prediction["pred_masks"].shape == (BATCH, QUERIES, *MASK_SIZE)
    # The first prediction is made from the learned queries alone, before any layer.
    with torch.no_grad():
        first = decoder.forward_prediction_heads(
            decoder.query_feat.weight[None].expand(BATCH, -1, -1), mask_features
        )
    torch.testing.assert_close(predictions["aux_outputs"][0]["pred_masks"], first["pred_masks"])
    torch.testing.assert_close(predictions["aux_outputs"][0]["pred_logits"], first["pred_logits"])
    # Each layer's mask is the previous prediction thresholded at the layer's scale.
    for i in range(5):
        previous = predictions["aux_outputs"][i]["pred_masks"]
        resized = torch.nn.functional.interpolate(
            previous, size=LEVEL_SIZES[i % 3], mode="bilinear", align_corners=False
        )
        expected = resized.sigmoid().flatten(2) < 0.5
        expected[expected.all(-1)] = False
        mask = recorder.masks[i].view(BATCH, HEADS, QUERIES, -1)
        assert torch.equal(mask, expected[:, None].expand_as(mask))


def test_decoder_without_classification_predicts_masks_only():
    torch.manual_seed(0)
    decoder = MultiScaleMaskedTransformerDecoder(
        in_channels=16, mask_classification=False, num_classes=5, hidden_dim=HIDDEN,
        num_queries=QUERIES, nheads=HEADS, dim_feedforward=64, dec_layers=2, pre_norm=True,
        mask_dim=HIDDEN, enforce_input_project=False,
    )
    assert not hasattr(decoder, "class_embed")
    assert all(len(list(p.parameters())) == 2 for p in decoder.input_proj)  # 16 -> 32 conv
    features = [torch.randn(1, 16, h, w) for h, w in LEVEL_SIZES]
    with torch.no_grad():
        predictions = decoder(features, torch.randn(1, HIDDEN, *MASK_SIZE))
    assert set(predictions) == {"pred_masks", "aux_outputs"}
    assert len(predictions["aux_outputs"]) == 2
