"""
MaskFormer's inference (mask2former/maskformer_model.py, ``MaskFormer.inference``, and
mask2former/modeling/postprocessing.py) in numpy, applied to the outputs of an exported graph.

The definitions are those of the PyTorch model, step for step (same thresholds, same tie
breaking: the first maximum wins), so that the results are the same; tests/test_export.py checks
that they are, given the same head outputs. Results are numpy arrays:

    * "sem_seg": (K, height, width) float32 per-class scores;
    * "panoptic_seg": (panoptic_seg (height, width) int32 segment ids, 0 = void, segments_info
      [{"id", "category_id", "isthing", and "score" for things}]);
    * "instances": {"pred_masks": (N, height, width) bool, "pred_boxes": (N, 4) float32 XYXY
      boxes enclosing the masks (zeros for an empty mask), "scores": (N,) float32,
      "pred_classes": (N,) int64}, in descending order of class score.
"""
import numpy as np

from .resize import resize_maps

__all__ = [
    "semantic_inference",
    "panoptic_inference",
    "panoptic_segments",
    "instance_inference",
    "inference_results",
]


def _softmax(logits):
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def _sigmoid(logits):
    """
    Overflow-free, with PyTorch's tiny (not zero) values for very negative logits: exp of
    non-positive numbers only, in place to spare passes over (Q, H, W) arrays.
    """
    exp = np.abs(logits)
    np.negative(exp, out=exp)
    np.exp(exp, out=exp)
    probs = np.where(logits >= 0, np.ones((), logits.dtype), exp)
    exp += 1
    probs /= exp
    return probs


def semantic_inference(mask_cls, mask_pred):
    """
    Args:
        mask_cls: (Q, K + 1) class logits; mask_pred: (Q, H, W) mask logits.

    Returns:
        (K, H, W) float32: sum over queries of class probability times mask probability.
    """
    probs = _softmax(mask_cls)[:, :-1]
    masks = _sigmoid(mask_pred)
    scores = probs.T @ masks.reshape(masks.shape[0], -1)
    return scores.reshape((-1,) + mask_pred.shape[1:]).astype(np.float32, copy=False)


def panoptic_inference(mask_cls, mask_pred, object_mask_threshold, overlap_threshold,
                       thing_ids):
    """
    Non-overlapping segments from the confident queries (``panoptic_inference`` of
    mask2former/modeling/postprocessing.py: its docstring states the rules).

    Args:
        mask_cls: (Q, K + 1) class logits; mask_pred: (Q, H, W) mask logits.
        object_mask_threshold, overlap_threshold (float): the panoptic thresholds.
        thing_ids (collection of int): contiguous ids of the thing classes.

    Returns:
        (panoptic_seg (H, W) int32, segments_info list of dicts).
    """
    num_classes = mask_cls.shape[-1] - 1
    probs = _softmax(mask_cls)
    labels = probs.argmax(-1)
    scores = probs.max(-1)
    keep = (labels != num_classes) & (scores > object_mask_threshold)
    scores, labels, masks = scores[keep], labels[keep], _sigmoid(mask_pred[keep])

    panoptic_seg = np.zeros(mask_pred.shape[-2:], dtype=np.int32)
    segments_info = []
    if masks.shape[0] == 0:
        return panoptic_seg, segments_info

    num_kept = masks.shape[0]
    winner = (scores[:, None, None] * masks).argmax(0)
    winner_owns = np.take_along_axis(masks, winner[None], 0)[0] >= 0.5
    areas = zip(
        np.bincount(winner.ravel(), minlength=num_kept).tolist(),
        (masks >= 0.5).reshape(num_kept, -1).sum(1).tolist(),
        np.bincount(winner[winner_owns], minlength=num_kept).tolist(),
    )
    segment_ids, segments_info = panoptic_segments(
        labels.tolist(), scores.tolist(), areas, overlap_threshold, thing_ids
    )
    for k, segment_id in enumerate(segment_ids):
        if segment_id:
            panoptic_seg[(winner == k) & winner_owns] = segment_id
    return panoptic_seg, segments_info


def panoptic_segments(labels, scores, areas, overlap_threshold, thing_ids):
    """
    The segment decisions of panoptic inference, given each kept query's areas: a query keeps
    its segment if it wins some pixels of its own mask and at least ``overlap_threshold`` of its
    mask's area; segments of the same stuff class merge into the first one.

    Args:
        labels, scores: contiguous class id and class probability of each kept query.
        areas: per kept query (won area, own mask area, segment area = won & own), ints.
        overlap_threshold (float); thing_ids (collection of int): contiguous thing ids.

    Returns:
        (segment id of each kept query, 0 for none; segments_info).
    """
    thing_ids = set(thing_ids)
    segment_ids, segments_info, stuff_segment_id = [], [], {}
    for category_id, score, (won_area, own_area, segment_area) in zip(labels, scores, areas):
        segment_ids.append(0)
        if won_area == 0 or own_area == 0 or segment_area == 0:
            continue
        if won_area / own_area < overlap_threshold:
            continue
        isthing = category_id in thing_ids
        if not isthing and category_id in stuff_segment_id:
            segment_ids[-1] = stuff_segment_id[category_id]
            continue
        segment_ids[-1] = len(segments_info) + 1
        segments_info.append({"id": segment_ids[-1], "category_id": category_id,
                              "isthing": isthing})
        if isthing:
            segments_info[-1]["score"] = score
        else:
            stuff_segment_id[category_id] = segment_ids[-1]
    return segment_ids, segments_info


def _boxes_enclosing(masks):
    """(N, H, W) bool -> (N, 4) float32 XYXY boxes (Detectron2's BitMasks.get_bounding_boxes)."""
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    columns, rows = masks.any(1), masks.any(2)
    for i in range(masks.shape[0]):
        xs, ys = np.flatnonzero(columns[i]), np.flatnonzero(rows[i])
        if len(xs) and len(ys):
            boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


def instance_inference(mask_cls, mask_pred, topk, thing_ids=None):
    """
    The ``topk`` highest (query, class) pairs, scored by class probability times the mean mask
    probability inside the binary mask (``instance_inference`` of
    mask2former/modeling/postprocessing.py).

    Args:
        mask_cls: (Q, K + 1) class logits; mask_pred: (Q, H, W) mask logits.
        topk (int): number of pairs (at most Q * K).
        thing_ids (collection of int or None): if given, only pairs of these classes are kept.

    Returns:
        dict: see the module docstring.
    """
    num_queries, num_classes = mask_cls.shape[0], mask_cls.shape[-1] - 1
    class_scores = _softmax(mask_cls)[:, :-1].ravel()  # query-major
    count = min(topk, num_queries * num_classes)
    top = np.argpartition(-class_scores, count - 1)[:count]
    top = top[np.argsort(-class_scores[top], kind="stable")]
    scores, labels, query_idx = class_scores[top], top % num_classes, top // num_classes
    if thing_ids is not None:
        is_thing = np.isin(labels, list(thing_ids))
        scores, labels, query_idx = scores[is_thing], labels[is_thing], query_idx[is_thing]

    logits = mask_pred[query_idx]
    masks = logits > 0
    inside = masks.reshape(len(masks), -1)
    mask_scores = (_sigmoid(logits).reshape(len(masks), -1) * inside).sum(1) / (
        inside.sum(1).astype(np.float32) + np.float32(1e-6)
    )
    return {
        "pred_masks": masks,
        "pred_boxes": _boxes_enclosing(masks),
        "scores": (scores * mask_scores).astype(np.float32),
        "pred_classes": labels.astype(np.int64),
    }


def inference_results(mask_cls, mask_pred, height, width, settings):
    """
    One image's results at the output size, as ``MaskFormer.inference`` computes them.

    Args:
        mask_cls: (Q, K + 1) class logits.
        mask_pred: (Q, H, W) mask logits at the input image's resolution (the graph's output).
        height, width: output size (the original image's; (H, W) when it was not resized).
        settings: :class:`InferenceSettings`.

    Returns:
        dict with "sem_seg", "panoptic_seg" and/or "instances" (see the module docstring).
    """
    resize_first = (settings.sem_seg_postprocess_before_inference or settings.panoptic_on
                    or settings.instance_on)
    if resize_first:
        mask_pred = resize_maps(mask_pred, height, width)
    results = {}
    if settings.semantic_on:
        sem_seg = semantic_inference(mask_cls, mask_pred)
        results["sem_seg"] = sem_seg if resize_first else resize_maps(sem_seg, height, width)
    if settings.panoptic_on:
        results["panoptic_seg"] = panoptic_inference(
            mask_cls, mask_pred, settings.object_mask_threshold, settings.overlap_threshold,
            settings.thing_ids,
        )
    if settings.instance_on:
        results["instances"] = instance_inference(
            mask_cls, mask_pred, settings.test_topk_per_image, settings.thing_ids
        )
    return results
