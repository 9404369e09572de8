"""
Hungarian matching of predicted masks to ground-truth segments (Mask2Former, Sec. 3.3 and
MaskFormer, Sec. 3.2): a bipartite matching with the cost of the set-prediction loss, on masks
compared at a set of random points.
"""
import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..utils.point_sampling import point_sample

__all__ = ["HungarianMatcher", "batch_sigmoid_ce_cost", "batch_dice_cost"]


def batch_sigmoid_ce_cost(inputs, targets):
    """
    Mean sigmoid binary cross-entropy between every prediction and every target.

    Args:
        inputs (Tensor): (Q, P) mask logits at P points.
        targets (Tensor): (T, P) binary (or soft) target masks at the same points.

    Returns:
        Tensor: (Q, T) cost, mean over the points.
    """
    num_points = inputs.shape[1]
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / num_points


def batch_dice_cost(inputs, targets):
    """
    Dice loss (1 - soft Dice coefficient, +1 smoothing) between every prediction and every target.

    Args:
        inputs (Tensor): (Q, P) mask logits at P points.
        targets (Tensor): (T, P) binary (or soft) target masks at the same points.

    Returns:
        Tensor: (Q, T) cost in [0, 1].
    """
    probs = inputs.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher(nn.Module):
    """
    One-to-one assignment of the Q predictions of an image to its T ground-truth segments
    (T may be smaller than Q; the unmatched predictions are "no object").

    The cost of matching prediction i to target j is
    ``cost_class * (-p_i(c_j)) + cost_mask * BCE(m_i, g_j) + cost_dice * Dice(m_i, g_j)``,
    with p_i the softmax class probabilities, c_j the target class, and the mask terms taken on
    ``num_points`` uniform random points, the same for all predictions and targets of an image.
    """

    def __init__(self, cost_class: float = 1.0, cost_mask: float = 1.0, cost_dice: float = 1.0,
                 num_points: int = 0):
        """
        Args:
            cost_class: weight of the classification cost.
            cost_mask: weight of the sigmoid binary cross-entropy mask cost.
            cost_dice: weight of the dice mask cost.
            num_points: number of random points on which the masks are compared.
        """
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: all costs are 0; set a non-zero cost weight")
        if num_points <= 0:
            raise ValueError(f"HungarianMatcher: num_points must be positive, got {num_points}")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    def cost_matrix(self, pred_logits, pred_masks, tgt_labels, tgt_masks, point_coords):
        """
        Matching cost of one image, or of one clip: masks with a frame axis F are read at the
        same points in every frame, and each mask's F * P values form one vector.

        Args:
            pred_logits (Tensor): (Q, K+1) class logits, the last class being "no object".
            pred_masks (Tensor): (Q, H, W) mask logits, or (Q, F, H, W) for a clip.
            tgt_labels (Tensor): (T,) int64 target classes in [0, K).
            tgt_masks (Tensor): (T, H', W') binary target masks (any resolution), or
                (T, F, H', W') for a clip.
            point_coords (Tensor): (P, 2) points (x, y) in [0, 1] x [0, 1].

        Returns:
            Tensor: (Q, T) float32 cost.
        """
        cost_class = -pred_logits.float().softmax(-1)[:, tgt_labels]  # (Q, T)
        coords = point_coords.float()
        # (N, F, H, W) with F = 1 for images, read at the points: (N, F * P)
        pred_masks = pred_masks.float() if pred_masks.dim() == 4 else pred_masks.float()[:, None]
        tgt_masks = tgt_masks.float() if tgt_masks.dim() == 4 else tgt_masks.float()[:, None]
        out_points = point_sample(pred_masks, coords.expand(len(pred_masks), -1, -1)).flatten(1)
        tgt_points = point_sample(tgt_masks, coords.expand(len(tgt_masks), -1, -1)).flatten(1)
        return (
            self.cost_class * cost_class
            + self.cost_mask * batch_sigmoid_ce_cost(out_points, tgt_points)
            + self.cost_dice * batch_dice_cost(out_points, tgt_points)
        )

    @torch.no_grad()
    def forward(self, outputs, targets):
        """
        Args:
            outputs (dict): "pred_logits": (B, Q, K+1) class logits;
                "pred_masks": (B, Q, H, W) mask logits, or (B, Q, F, H, W) for clips.
            targets (list[dict]): B dicts with "labels": (T_b,) int64 classes and
                "masks": (T_b, H', W') binary masks, or (T_b, F, H', W') for clips.

        Returns:
            list[tuple[Tensor, Tensor]]: B pairs (pred_idx, tgt_idx), each (min(Q, T_b),) int64:
            prediction ``pred_idx[k]`` is matched to target ``tgt_idx[k]``.
        """
        pred_logits, pred_masks = outputs["pred_logits"], outputs["pred_masks"]
        indices = []
        with torch.autocast(device_type=pred_masks.device.type, enabled=False):
            for b, target in enumerate(targets):
                point_coords = torch.rand(self.num_points, 2, device=pred_masks.device)
                cost = self.cost_matrix(
                    pred_logits[b], pred_masks[b], target["labels"], target["masks"], point_coords
                )
                cost = cost.cpu().numpy()
                if not np.isfinite(cost).all():  # scipy would only say "invalid numeric entries"
                    raise FloatingPointError(
                        f"HungarianMatcher: the matching cost of image {b} of the batch holds NaN "
                        "or Inf: the model's predictions are not finite (training diverged; "
                        "resume from an earlier checkpoint with a lower SOLVER.BASE_LR)."
                    )
                pred_idx, tgt_idx = linear_sum_assignment(cost)
                indices.append(
                    (torch.as_tensor(pred_idx, dtype=torch.int64),
                     torch.as_tensor(tgt_idx, dtype=torch.int64))
                )
        return indices
