"""
Set-prediction loss of Mask2Former (Sec. 3.3 of the paper): match predictions to ground-truth
segments with :class:`HungarianMatcher`, then a cross-entropy classification loss on all
queries (unmatched ones supervised as "no object") and sigmoid BCE + dice mask losses on the
matched pairs, computed on uncertain points (PointRend) instead of on every pixel.
"""
import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from torch import nn

from ..utils.point_sampling import get_uncertain_point_coords_with_randomness, point_sample

__all__ = ["SetCriterion", "sigmoid_ce_loss", "dice_loss", "calculate_uncertainty"]


def sigmoid_ce_loss(inputs, targets, num_masks):
    """
    Args:
        inputs (Tensor): (M, P) mask logits at P points.
        targets (Tensor): (M, P) binary targets at the same points.
        num_masks (float): normalizer, the number of target masks in the batch.

    Returns:
        Tensor: scalar, the BCE averaged over points and summed over masks, / num_masks.
    """
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(inputs, targets, num_masks):
    """
    Args:
        inputs (Tensor): (M, P) mask logits at P points.
        targets (Tensor): (M, P) binary targets at the same points.
        num_masks (float): normalizer, the number of target masks in the batch.

    Returns:
        Tensor: scalar, the dice loss (+1 smoothing) summed over masks, / num_masks.
    """
    probs = inputs.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def calculate_uncertainty(logits):
    """
    Uncertainty of class-agnostic mask logits: -|logit|, highest on the decision boundary.

    Args:
        logits (Tensor): (M, 1, P) mask logits.

    Returns:
        Tensor: (M, 1, P) uncertainties.
    """
    return -torch.abs(logits)


class SetCriterion(nn.Module):
    """
    Losses of Mask2Former for a batch. Each loss is a method ``loss_<name>`` chosen by name in
    ``losses``; the returned terms are unweighted (``weight_dict`` holds their weights, applied
    by the caller). Every prediction in ``outputs["aux_outputs"]`` is matched and supervised
    like the final one, its terms suffixed ``_0``, ``_1``, ...; an auxiliary prediction is
    skipped when ``weight_dict`` has none of its terms (no deep supervision).
    """

    def __init__(self, num_classes, matcher, weight_dict, eos_coef, losses, num_points,
                 oversample_ratio, importance_sample_ratio):
        """
        Args:
            num_classes (int): K, the number of classes, without "no object".
            matcher (nn.Module): returns the (pred_idx, tgt_idx) pairs of each image.
            weight_dict (dict[str, float]): weight of each loss term, e.g. "loss_ce", "loss_dice_0".
            eos_coef (float): classification weight of the "no object" class.
            losses (list[str]): names of the losses to compute: "labels" and/or "masks".
            num_points (int): points per mask for the mask losses.
            oversample_ratio (float), importance_sample_ratio (float): uncertain point sampling,
                see :func:`get_uncertain_point_coords_with_randomness`.
        """
        super().__init__()
        unknown = set(losses) - {"labels", "masks"}
        if unknown:
            raise ValueError(
                f"SetCriterion: unknown losses {sorted(unknown)}; use 'labels' and/or 'masks'"
            )
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.eos_coef = eos_coef
        self.losses = list(losses)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def loss_labels(self, outputs, targets, indices, num_masks):
        """
        Cross-entropy over the K+1 classes of every query; "no object" for unmatched queries,
        weighted by ``empty_weight``.

        Args:
            outputs (dict): "pred_logits": (B, Q, K+1).
            targets (list[dict]): "labels": (T_b,) int64.
            indices (list[tuple[Tensor, Tensor]]): matched (pred_idx, tgt_idx) of each image.
            num_masks (float): unused (the cross-entropy is a weighted mean over queries).

        Returns:
            dict: "loss_ce": scalar.
        """
        logits = outputs["pred_logits"].float()
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )
        batch_idx, pred_idx = self._matched_prediction_index(indices)
        target_classes[batch_idx, pred_idx] = torch.cat(
            [t["labels"][tgt] for t, (_, tgt) in zip(targets, indices)]
        ).to(logits.device)
        loss_ce = F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)
        return {"loss_ce": loss_ce}

    def loss_masks(self, outputs, targets, indices, num_masks):
        """
        Sigmoid BCE and dice losses of the matched masks, on ``num_points`` points per mask
        chosen where the prediction is uncertain (plus random points); the targets are read at
        the same points. For clips, each frame's mask of a matched pair is one mask here (its
        own points), and the sum over them is still divided by ``num_masks`` (tracks).

        Args:
            outputs (dict): "pred_masks": (B, Q, H, W) mask logits, or (B, Q, F, H, W).
            targets (list[dict]): "masks": (T_b, H', W') binary masks, or (T_b, F, H', W').
            indices (list[tuple[Tensor, Tensor]]): matched (pred_idx, tgt_idx) of each image.
            num_masks (float): normalizer, the number of target masks over all workers.

        Returns:
            dict: "loss_mask", "loss_dice": scalars.
        """
        batch_idx, pred_idx = self._matched_prediction_index(indices)
        src_masks = outputs["pred_masks"][batch_idx, pred_idx].float()  # (M[, F], H, W)
        tgt_masks = torch.cat([t["masks"][tgt] for t, (_, tgt) in zip(targets, indices)])
        # One mask per (match, frame): (M * F, H, W) and (M * F, H', W').
        src_masks = src_masks.reshape(-1, *src_masks.shape[-2:])
        tgt_masks = tgt_masks.reshape(-1, *tgt_masks.shape[-2:]).to(src_masks)

        with torch.no_grad():
            point_coords = get_uncertain_point_coords_with_randomness(
                src_masks[:, None],
                calculate_uncertainty,
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )  # (M, P, 2)
            point_labels = point_sample(tgt_masks[:, None], point_coords)[:, 0]  # (M, P)
        point_logits = point_sample(src_masks[:, None], point_coords)[:, 0]  # (M, P)
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    @staticmethod
    def _matched_prediction_index(indices):
        """(M,) image index and (M,) query index of the matched predictions of a batch."""
        batch_idx = torch.cat([torch.full_like(pred, b) for b, (pred, _) in enumerate(indices)])
        pred_idx = torch.cat([pred for pred, _ in indices])
        return batch_idx, pred_idx

    def _num_masks(self, targets, device):
        """Mean over workers of the number of target masks, at least 1."""
        num_masks = torch.as_tensor(
            float(sum(len(t["labels"]) for t in targets)), dtype=torch.float, device=device
        )
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num_masks)
        return torch.clamp(num_masks / comm.get_world_size(), min=1).item()

    def _losses_of(self, outputs, targets, num_masks):
        indices = self.matcher(outputs, targets)
        losses = {}
        for name in self.losses:
            losses.update(getattr(self, f"loss_{name}")(outputs, targets, indices, num_masks))
        return losses

    def forward(self, outputs, targets):
        """
        Args:
            outputs (dict): "pred_logits": (B, Q, K+1), "pred_masks": (B, Q, H, W) of the final
                prediction; optional "aux_outputs": list of dicts with the same two keys.
            targets (list[dict]): B dicts with "labels": (T_b,) int64 in [0, K) and
                "masks": (T_b, H', W') binary masks (T_b may be 0; H', W' the same for all images).

        Returns:
            dict[str, Tensor]: scalar losses "loss_ce", "loss_mask", "loss_dice", and the same
            suffixed "_i" for the i-th auxiliary prediction.
        """
        num_masks = self._num_masks(targets, outputs["pred_logits"].device)
        final = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        losses = self._losses_of(final, targets, num_masks)
        for i, aux_outputs in enumerate(outputs.get("aux_outputs", [])):
            if not any(f"{k}_{i}" in self.weight_dict for k in losses):
                continue
            aux_losses = self._losses_of(aux_outputs, targets, num_masks)
            losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses
