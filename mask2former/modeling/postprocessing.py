"""
Turn the Q (class, mask) predictions of one image into semantic, panoptic and instance
results (Mask2Former, Sec. 4 "Inference", following MaskFormer's post-processing).

All functions take one image's predictions at the output resolution:
``mask_cls`` (Q, K+1) class logits, the last class being "no object", and
``mask_pred`` (Q, H, W) mask logits.
"""
import torch
import torch.nn.functional as F
from detectron2.structures import BitMasks, Instances

__all__ = ["semantic_inference", "panoptic_inference", "instance_inference"]


def semantic_inference(mask_cls, mask_pred):
    """
    Per-pixel class scores: sum over queries of class probability times mask probability.

    Returns:
        Tensor: (K, H, W) scores.
    """
    probs = F.softmax(mask_cls, dim=-1)[:, :-1]
    return torch.einsum("qk,qhw->khw", probs, mask_pred.sigmoid())


def panoptic_inference(mask_cls, mask_pred, object_mask_threshold, overlap_threshold,
                       thing_classes):
    """
    Non-overlapping segments from the confident queries.

    Queries predicting "no object" or with a class score <= ``object_mask_threshold`` are
    dropped. Each pixel goes to the query with the highest score * mask probability, if that
    mask probability is >= 0.5. A query keeps its segment only if the area it wins is at least
    ``overlap_threshold`` times its own mask area (mask probability >= 0.5). Segments of the
    same stuff class are merged into one.

    Args:
        object_mask_threshold (float), overlap_threshold (float): see above.
        thing_classes (set[int]): contiguous ids of the thing classes.

    Returns:
        tuple: (panoptic_seg, segments_info): panoptic_seg (H, W) int32 segment ids, 0 = void;
        segments_info a list with one dict per segment id 1, 2, ...:
        {"id": int, "category_id": int (contiguous), "isthing": bool}, and for things "score"
        (the query's class probability, which Detectron2's Visualizer draws beside the name).
    """
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    scores, labels, masks = scores[keep], labels[keep], mask_pred[keep].sigmoid()

    panoptic_seg = torch.zeros(mask_pred.shape[-2:], dtype=torch.int32, device=mask_pred.device)
    segments_info = []
    if masks.shape[0] == 0:
        return panoptic_seg, segments_info

    num_kept = masks.shape[0]
    winner = (scores[:, None, None] * masks).argmax(0)  # (H, W) index into the kept queries
    winner_owns = masks.gather(0, winner[None])[0] >= 0.5  # (H, W) the winner's mask prob >= 0.5
    # (N, 3) areas of each kept query: won, own mask, segment (won & own); one host copy.
    areas = torch.stack(
        (
            torch.bincount(winner.flatten(), minlength=num_kept),
            (masks >= 0.5).flatten(1).sum(1),
            torch.bincount(winner[winner_owns], minlength=num_kept),
        ),
        dim=1,
    ).tolist()
    stuff_segment_id = {}
    for k, (category_id, score, (won_area, own_area, segment_area)) in enumerate(
        zip(labels.tolist(), scores.tolist(), areas)
    ):
        if won_area == 0 or own_area == 0 or segment_area == 0:
            continue
        if won_area / own_area < overlap_threshold:
            continue
        segment = (winner == k) & winner_owns
        isthing = category_id in thing_classes
        if not isthing and category_id in stuff_segment_id:
            panoptic_seg[segment] = stuff_segment_id[category_id]
            continue
        segment_id = len(segments_info) + 1
        panoptic_seg[segment] = segment_id
        segments_info.append({"id": segment_id, "category_id": category_id, "isthing": isthing})
        if isthing:
            segments_info[-1]["score"] = score
        else:
            stuff_segment_id[category_id] = segment_id
    return panoptic_seg, segments_info


def instance_inference(mask_cls, mask_pred, topk, thing_classes=None):
    """
    The ``topk`` highest (query, class) pairs, scored by class probability times the mean mask
    probability inside the binary mask (mask logit > 0).

    Args:
        topk (int): number of detections (at most Q * K are returned).
        thing_classes (set[int] or None): if given, only pairs of these classes are kept
            (panoptic models predict stuff classes too).

    Returns:
        Instances: of image size (H, W), with "pred_masks" (N, H, W) bool, "pred_boxes" Boxes
        (N, 4) XYXY enclosing the masks, "scores" (N,), "pred_classes" (N,) int64 contiguous ids.
    """
    num_queries, num_classes = mask_cls.shape[0], mask_cls.shape[-1] - 1
    class_scores = F.softmax(mask_cls, dim=-1)[:, :-1].flatten()  # (Q * K,) query-major
    scores, pair_idx = class_scores.topk(min(topk, num_queries * num_classes), sorted=False)
    labels = pair_idx % num_classes
    query_idx = pair_idx // num_classes
    if thing_classes is not None:
        is_thing = torch.tensor([c in thing_classes for c in labels.tolist()],
                                dtype=torch.bool, device=labels.device)
        scores, labels, query_idx = scores[is_thing], labels[is_thing], query_idx[is_thing]

    logits = mask_pred[query_idx]  # (N, H, W)
    masks = logits > 0
    mask_scores = (logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)

    result = Instances(tuple(mask_pred.shape[-2:]))
    result.pred_masks = masks
    result.pred_boxes = BitMasks(masks).get_bounding_boxes().to(masks.device)
    result.scores = scores * mask_scores
    result.pred_classes = labels
    return result
