"""
The inference shortcuts (oneDNN linears, no auxiliary masks at inference) give the results of the
plain computation, and the opt-in reduced-precision inference (MODEL.MASK_FORMER.TEST.PRECISION).
"""
import pytest
import torch
from detectron2.modeling import build_model
from torch.nn import functional as F
from torch.profiler import profile

from mask2former.modeling.linear import Linear
from mask2former.modeling.transformer_decoder.mask2former_transformer_decoder import _attention
from small_model import small_config


def ops_called(fn):
    with profile() as prof:
        fn()
    return {event.key for event in prof.key_averages()}


@pytest.mark.parametrize("activation, reference", [
    (None, lambda y: y), ("relu", F.relu), ("gelu", F.gelu),
])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_inference_equals_f_linear(activation, reference, bias):
    torch.manual_seed(0)
    layer = Linear(48, 80, bias=bias)
    x = torch.randn(2, 37, 48).transpose(0, 1)  # (37, 2, 48), not contiguous
    expected = reference(F.linear(x, layer.weight, layer.bias))
    with torch.no_grad():
        assert "mkldnn::_linear_pointwise" in ops_called(lambda: layer(x, activation))
        torch.testing.assert_close(layer(x, activation), expected, atol=1e-5, rtol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = layer(x, activation)
            low_reference = reference(F.linear(x, layer.weight, layer.bias))
    assert low.dtype == low_reference.dtype == torch.bfloat16
    torch.testing.assert_close(low, low_reference, atol=2e-2, rtol=2e-2)


def test_linear_trains_like_nn_linear():
    torch.manual_seed(0)
    layer = Linear(8, 4)
    plain = torch.nn.Linear(8, 4)
    plain.load_state_dict(layer.state_dict())
    assert list(layer.state_dict()) == ["weight", "bias"]
    x = torch.randn(5, 8)
    layer(x, "relu").sum().backward()
    F.relu(plain(x)).sum().backward()
    assert "mkldnn::_linear_pointwise" not in ops_called(lambda: layer(x))
    torch.testing.assert_close(layer.weight.grad, plain.weight.grad)
    torch.testing.assert_close(layer.bias.grad, plain.bias.grad)


def small_model(precision="float32"):
    cfg = small_config(num_classes=4, num_queries=8, dec_layers=4)
    cfg.MODEL.MASK_FORMER.TEST.PRECISION = precision
    torch.manual_seed(0)
    return build_model(cfg).eval()


def normalized_images(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2, 3, 96, 128), generator=generator).float()
    return (images - model.pixel_mean) / model.pixel_std


def test_predict_skips_only_the_auxiliary_predictions():
    model = small_model()
    images = normalized_images(model)
    with torch.no_grad():
        full = model.sem_seg_head(model.backbone(images))
        predicted = model.predict(images)
    assert len(full["aux_outputs"]) == 3
    assert set(predicted) == {"pred_logits", "pred_masks"}
    # predict() also runs the backbone on channels-last images: the same up to rounding.
    for key in predicted:
        torch.testing.assert_close(predicted[key], full[key], atol=1e-4, rtol=1e-4)


def test_bfloat16_inference_is_opt_in_and_agrees_with_float32():
    reference, low = small_model(), small_model("bfloat16")
    images = normalized_images(reference, seed=1)
    with torch.no_grad():
        expected = reference.predict(images)
        got = low.predict(images)
        # the pixel decoder ran in bfloat16 (outputs of a float32 one would be float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features = low.sem_seg_head.pixel_decoder.forward_features(low.backbone(images))
    assert features[0].dtype == torch.bfloat16
    assert all(v.dtype == torch.float32 for v in got.values())
    probabilities = got["pred_logits"].softmax(-1)
    expected_probabilities = expected["pred_logits"].softmax(-1)
    assert (probabilities - expected_probabilities).abs().max() < 0.05
    masks, expected_masks = got["pred_masks"] > 0, expected["pred_masks"] > 0
    assert (masks == expected_masks).float().mean() > 0.95
    assert not torch.equal(got["pred_masks"], expected["pred_masks"])  # it did change precision

    low.train()  # training keeps the published float32 pixel decoder under autocast
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = low.sem_seg_head.pixel_decoder.forward_features(low.backbone(images))
    assert features[0].dtype == torch.float32


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="MODEL.MASK_FORMER.TEST.PRECISION='half'"):
        small_model("half")


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("training", [False, True])
def test_decoder_attention_equals_nn_multihead_attention(batch, training):
    torch.manual_seed(0)
    attn = torch.nn.MultiheadAttention(32, 4, batch_first=True).train(training)
    query, key, value = torch.randn(batch, 6, 32), torch.randn(batch, 20, 32), torch.randn(
        batch, 20, 32)
    blocked = torch.rand(batch, 6, 20) < 0.5
    blocked[:, :, 0] = False  # no query blocked everywhere
    per_head = torch.rand(batch * 4, 6, 20) < 0.5
    per_head[:, :, 0] = False
    masks = [None, blocked[:, None].expand(batch, 4, 6, 20).flatten(0, 1), per_head]
    for mask in masks:
        expected = attn(query, key, value, attn_mask=mask, need_weights=False)[0]
        torch.testing.assert_close(_attention(attn, query, key, value, mask), expected,
                                   atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the inference path (oneDNN projections)
        torch.testing.assert_close(_attention(attn.eval(), query, key, value, masks[1]),
                                   attn(query, key, value, attn_mask=masks[1])[0],
                                   atol=1e-5, rtol=1e-5)
