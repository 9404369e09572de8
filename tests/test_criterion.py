"""SetCriterion: finite losses, deep supervision, images without segments, gradients."""
import pytest
import torch
import torch.nn.functional as F

from mask2former.modeling.criterion import SetCriterion
from mask2former.modeling.matcher import HungarianMatcher
from mask2former.utils.point_sampling import get_uncertain_point_coords_with_randomness

B, Q, K, H, W = 2, 6, 4, 8, 10
NUM_AUX = 3


def make_criterion(eos_coef=0.1, num_aux=NUM_AUX):
    weight_dict = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
    main_terms = list(weight_dict.items())
    weight_dict.update({f"{k}_{i}": v for i in range(num_aux) for k, v in main_terms})
    return SetCriterion(
        K, HungarianMatcher(2.0, 5.0, 5.0, num_points=64), weight_dict, eos_coef,
        ["labels", "masks"], num_points=64, oversample_ratio=3.0, importance_sample_ratio=0.75,
    )


def make_outputs(seed=0):
    generator = torch.Generator().manual_seed(seed)

    def prediction():
        return {
            "pred_logits": torch.randn(B, Q, K + 1, generator=generator).requires_grad_(),
            "pred_masks": torch.randn(B, Q, H, W, generator=generator).requires_grad_(),
        }

    outputs = prediction()
    outputs["aux_outputs"] = [prediction() for _ in range(NUM_AUX)]
    return outputs


def make_targets(counts, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [
        {"labels": torch.randint(0, K, (n,), generator=generator),
         "masks": torch.rand(n, 4 * H, 4 * W, generator=generator) > 0.5}
        for n in counts
    ]


def test_losses_are_finite_with_deep_supervision_keys():
    criterion = make_criterion()
    assert criterion.empty_weight.tolist() == [1.0] * K + [pytest.approx(0.1)]
    assert "empty_weight" in criterion.state_dict()
    losses = criterion(make_outputs(), make_targets([2, 3]))
    expected = {"loss_ce", "loss_mask", "loss_dice"}
    expected |= {f"{k}_{i}" for k in ["loss_ce", "loss_mask", "loss_dice"] for i in range(NUM_AUX)}
    assert set(losses) == expected == set(criterion.weight_dict)
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
        assert value.item() > 0, name


def test_aux_predictions_without_weights_are_skipped():
    losses = make_criterion(num_aux=0)(make_outputs(), make_targets([2, 3]))
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice"}


def test_gradients_reach_logits_and_masks_of_every_prediction():
    outputs = make_outputs()
    losses = make_criterion()(outputs, make_targets([2, 3]))
    sum(losses.values()).backward()
    for prediction in [outputs] + outputs["aux_outputs"]:
        for key in ["pred_logits", "pred_masks"]:
            grad = prediction[key].grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_images_without_segments():
    """All queries of an image without segments are supervised as "no object"."""
    outputs = make_outputs()
    losses = make_criterion()(outputs, make_targets([0, 0]))
    for value in losses.values():
        assert torch.isfinite(value)
    assert losses["loss_mask"].item() == 0 and losses["loss_dice"].item() == 0
    expected_ce = F.cross_entropy(outputs["pred_logits"].flatten(0, 1).detach(),
                                  torch.full((B * Q,), K))
    torch.testing.assert_close(losses["loss_ce"].detach(), expected_ce)
    sum(losses.values()).backward()
    assert outputs["pred_logits"].grad.abs().sum() > 0

    mixed = make_criterion()(make_outputs(), make_targets([0, 3]))
    assert all(torch.isfinite(v) for v in mixed.values())
    assert mixed["loss_mask"].item() > 0


def test_class_loss_uses_the_no_object_weight():
    """CE is the empty_weight-weighted mean over queries of the matched / no-object classes."""
    criterion = make_criterion(eos_coef=0.25)
    outputs = make_outputs()
    targets = make_targets([2, 1])
    indices = criterion.matcher(outputs, targets)
    loss = criterion.loss_labels(outputs, targets, indices, 3.0)["loss_ce"]
    classes = torch.full((B, Q), K)
    for b, (pred, tgt) in enumerate(indices):
        classes[b, pred] = targets[b]["labels"][tgt]
    log_probs = outputs["pred_logits"].detach().log_softmax(-1)
    nll = -log_probs.gather(-1, classes[..., None])[..., 0]
    weights = torch.where(classes == K, 0.25, 1.0)
    torch.testing.assert_close(loss.detach(), (nll * weights).sum() / weights.sum())


def test_perfect_masks_have_small_mask_losses():
    mask = torch.zeros(4 * H, 4 * W, dtype=torch.bool)
    mask[8:24, 4:20] = True
    logits = torch.full((1, Q, K + 1), -10.0)
    logits[0, :, 1] = 10.0
    pred_masks = torch.full((1, Q, 4 * H, 4 * W), -20.0)
    pred_masks[0, 0][mask] = 20.0
    losses = make_criterion(num_aux=0)(
        {"pred_logits": logits, "pred_masks": pred_masks},
        [{"labels": torch.tensor([1]), "masks": mask[None]}],
    )
    # Only points interpolated across the mask border are not confidently right.
    assert losses["loss_dice"].item() < 0.2
    assert losses["loss_mask"].item() < 2.0


def test_uncertain_points_are_near_the_boundary():
    """With beta = 1 every point comes from the most uncertain candidates (|logit| small)."""
    logits = torch.linspace(-10, 10, 100).view(1, 1, 1, 100).expand(1, 1, 4, 100).contiguous()
    coords = get_uncertain_point_coords_with_randomness(
        logits, lambda x: -x.abs(), num_points=20, oversample_ratio=5, importance_sample_ratio=1.0
    )
    assert coords.shape == (1, 20, 2)
    assert ((coords[0, :, 0] - 0.5).abs() < 0.2).all()
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        get_uncertain_point_coords_with_randomness(logits, abs, 10, 3, 1.5)


def test_half_precision_outputs_under_autocast():
    """Mixed-precision training: low-precision predictions give float32 losses and gradients."""
    outputs = make_outputs()
    low = {k: outputs[k].detach().bfloat16().requires_grad_()
           for k in ["pred_logits", "pred_masks"]}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = make_criterion(num_aux=0)(low, make_targets([2, 3]))
    for value in losses.values():
        assert value.dtype == torch.float32 and torch.isfinite(value)
    sum(losses.values()).backward()
    assert low["pred_masks"].grad.dtype == torch.bfloat16
