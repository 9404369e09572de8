"""HungarianMatcher: optimal assignments, costs of the paper, float32 under autocast."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from mask2former.modeling.matcher import HungarianMatcher
from mask2former.utils.point_sampling import point_sample

NUM_CLASSES = 5
NUM_POINTS = 50


def reference_cost(pred_logits, pred_masks, labels, masks, coords, weights):
    """(Q, T) cost written out element by element, independently of the matcher."""
    w_class, w_mask, w_dice = weights
    probs = pred_logits.softmax(-1)
    grid = (2 * coords - 1).view(1, -1, 1, 2)
    out = F.grid_sample(pred_masks[:, None], grid.expand(len(pred_masks), -1, -1, -1),
                        align_corners=False)[:, 0, :, 0]
    tgt = F.grid_sample(masks[:, None].float(), grid.expand(len(masks), -1, -1, -1),
                        align_corners=False)[:, 0, :, 0]
    cost = torch.zeros(len(pred_logits), len(labels))
    for i in range(len(pred_logits)):
        for j in range(len(labels)):
            bce = F.binary_cross_entropy_with_logits(out[i], tgt[j])
            p = out[i].sigmoid()
            dice = 1 - (2 * (p * tgt[j]).sum() + 1) / (p.sum() + tgt[j].sum() + 1)
            cost[i, j] = -w_class * probs[i, labels[j]] + w_mask * bce + w_dice * dice
    return cost


def random_case(generator, num_queries, num_targets):
    pred_logits = torch.randn(num_queries, NUM_CLASSES + 1, generator=generator) * 2
    pred_masks = torch.randn(num_queries, 8, 12, generator=generator) * 3
    labels = torch.randint(0, NUM_CLASSES, (num_targets,), generator=generator)
    masks = torch.rand(num_targets, 16, 24, generator=generator) > 0.5
    return pred_logits, pred_masks, labels, masks


@pytest.mark.parametrize("num_targets", [0, 1, 2, 3, 4])
def test_matcher_is_optimal_over_all_permutations(num_targets):
    weights = (2.0, 5.0, 5.0)
    matcher = HungarianMatcher(*weights, num_points=NUM_POINTS)
    generator = torch.Generator().manual_seed(num_targets)
    for trial in range(5):
        cases = [random_case(generator, 4, num_targets) for _ in range(2)]
        outputs = {
            "pred_logits": torch.stack([c[0] for c in cases]),
            "pred_masks": torch.stack([c[1] for c in cases]),
        }
        targets = [{"labels": c[2], "masks": c[3]} for c in cases]

        torch.manual_seed(trial)
        indices = matcher(outputs, targets)
        torch.manual_seed(trial)  # the matcher draws (P, 2) uniform points per image, in order
        coords = [torch.rand(NUM_POINTS, 2) for _ in cases]

        for case, point_coords, (pred_idx, tgt_idx) in zip(cases, coords, indices):
            assert pred_idx.dtype == tgt_idx.dtype == torch.int64
            assert len(pred_idx) == len(tgt_idx) == num_targets
            assert sorted(tgt_idx.tolist()) == list(range(num_targets))
            assert len(set(pred_idx.tolist())) == num_targets

            cost = reference_cost(*case, point_coords, weights)
            torch.testing.assert_close(
                matcher.cost_matrix(*case, point_coords), cost, rtol=1e-5, atol=1e-5
            )
            found = cost[pred_idx, tgt_idx].sum().item()
            best = min(
                sum(cost[q, t].item() for t, q in enumerate(perm))
                for perm in itertools.permutations(range(4), num_targets)
            )
            assert found == pytest.approx(best, abs=1e-5)


def test_matcher_prefers_the_right_query():
    """A query with the right class and mask wins over one with the wrong class and mask."""
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:12, 2:9] = True
    logits = torch.full((3, NUM_CLASSES + 1), -5.0)
    logits[0, 1] = 5.0  # wrong class, right mask
    logits[1, 3] = 5.0  # right class, right mask
    logits[2, 3] = 5.0  # right class, inverted mask
    masks = torch.stack([mask, mask, ~mask]).float() * 20 - 10
    outputs = {"pred_logits": logits[None], "pred_masks": masks[None]}
    targets = [{"labels": torch.tensor([3]), "masks": mask[None]}]
    (pred_idx, tgt_idx), = HungarianMatcher(1.0, 1.0, 1.0, num_points=200)(outputs, targets)
    assert pred_idx.tolist() == [1] and tgt_idx.tolist() == [0]


def test_matcher_uses_float32_under_autocast():
    generator = torch.Generator().manual_seed(0)
    logits, masks, labels, gt = random_case(generator, 4, 3)
    outputs = {"pred_logits": logits[None].bfloat16(), "pred_masks": masks[None].bfloat16()}
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=NUM_POINTS)
    coords = torch.rand(NUM_POINTS, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cost = matcher.cost_matrix(logits.bfloat16(), masks.bfloat16(), labels, gt, coords)
        indices = matcher(outputs, [{"labels": labels, "masks": gt}])
    assert cost.dtype == torch.float32
    assert len(indices[0][0]) == 3


def test_point_sample_reads_pixel_centers():
    """Point (x, y) in [0, 1]^2 reads pixel (floor(y * H), floor(x * W)) at its center."""
    values = torch.arange(12.0).view(1, 1, 3, 4)
    coords = torch.tensor([[[0.125, 1 / 6], [0.875, 5 / 6], [0.375, 0.5]]])
    torch.testing.assert_close(point_sample(values, coords), torch.tensor([[[0.0, 11.0, 5.0]]]))
