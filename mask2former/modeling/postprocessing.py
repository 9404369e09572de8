"""
Turn the Q (class, mask) predictions of one image into semantic, panoptic and instance
results (Mask2Former, Sec. 4 "Inference", following MaskFormer's post-processing).

One image's predictions are ``mask_cls`` (Q, K+1) class logits, the last class being
"no object", and its mask logits as :class:`MaskLogits`: the network's low-resolution
(Q, h, w) logits with the resizing that brings them to the output size (H, W).

Memory grows with the outputs, not with queries x pixels: :func:`postprocess` upsamples the
logits of a chunk of queries at a time (at most ``chunk_elements`` values at (H, W)), computes
each chunk's sigmoid once for all tasks, and each task keeps only what it returns (semantic
(K, H, W) scores, the panoptic winner of each pixel, the instance masks). Resizing a chunk of
queries gives exactly the values of resizing all of them at once, so the results equal the
unchunked computation. :func:`semantic_labels` and :func:`resize_semantic` give the
semantic argmax (H, W) without ever holding the (K, H, W) scores, in chunks of rows.

The decisions are shared with the numpy post-processing of exported models and defined there,
torch-free (mask2former/deploy/postprocessing.py): which queries panoptic inference keeps, its
segment decisions and bookkeeping, the pass over chunks of queries, which (query, class) pairs
instance inference keeps, the boxes enclosing masks, the chunk sizes, and the resize rules
(mask2former/deploy/resize.py). The per-pixel work is written twice, here in torch (tensors
stay on their device and in their dtype) and there in numpy (exported models run without
torch); tests/test_deploy_runner.py and tests/test_postprocessing.py check that both give the
same results.
"""
import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances

from ..deploy.postprocessing import (
    DEFAULT_CHUNK_ELEMENTS,
    PanopticMerge,
    boxes_from_projections,
    panoptic_keep,
    queries_per_chunk,
    rows_per_chunk,
    run_tasks_in_chunks,
    top_pairs,
)
from ..deploy.resize import bilinear_taps, nearest_index

__all__ = [
    "MaskLogits",
    "postprocess",
    "semantic_inference",
    "panoptic_inference",
    "instance_inference",
    "semantic_labels",
    "resize_semantic",
    "resize_results",
    "panoptic_categories",
    "DEFAULT_CHUNK_ELEMENTS",
]


def _bilinear(x, size):
    """(C, h, w) -> (C, H, W), bilinear with align_corners=False (Detectron2's resizes)."""
    return F.interpolate(x[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


class MaskLogits:
    """
    The mask logits of Q queries at an output size, made on demand for some queries or rows.

    The resizing is that of Detectron2's ``sem_seg_postprocess`` pipeline: ``logits``
    (Q, h, w) are resized (bilinear) to ``resize_to`` (the padded input size), cropped to
    their top-left ``crop_to`` (the image size before padding) and resized to ``output_size``.
    Each step is optional (None, or a size equal to the current one: no-op).

    Args:
        logits: (Q, h, w) mask logits.
        resize_to, crop_to, output_size: (height, width) or None.
    """

    def __init__(self, logits, resize_to=None, crop_to=None, output_size=None):
        self.logits = logits
        self.resize_to = tuple(resize_to) if resize_to else tuple(logits.shape[-2:])
        self.crop_to = tuple(crop_to) if crop_to else self.resize_to
        self.size = tuple(output_size) if output_size else self.crop_to

    @property
    def num_queries(self):
        return self.logits.shape[0]

    def queries(self, index):
        """Logits (N, H, W) of the queries ``index`` ((N,) int64 tensor or list of ints)."""
        x = self.logits[torch.as_tensor(index, device=self.logits.device)]
        if self.resize_to != tuple(x.shape[-2:]):
            x = _bilinear(x, self.resize_to)
        if self.crop_to != self.resize_to:
            x = x[:, : self.crop_to[0], : self.crop_to[1]].contiguous()
        if self.size != self.crop_to:
            x = _bilinear(x, self.size)
        return x

    def rows(self, start, stop):
        """
        Logits (Q, stop - start, W) of all queries in output rows [start, stop).

        Resized one axis at a time (rows by gathering, columns by ``F.interpolate``), so the
        values may differ from :meth:`queries` in the last bits of float precision.
        """
        # Back-project the rows through the second resize and the crop to the first resize's
        # rows, and through the first resize to the low-resolution rows.
        second = _row_weights(self.crop_to[0], self.size[0], start, stop, self.logits.device)
        mid_start, mid_stop = _needed_rows(second)
        first = _row_weights(self.logits.shape[-2], self.resize_to[0], mid_start, mid_stop,
                             self.logits.device)
        low_start, low_stop = _needed_rows(first)
        x = _resize_rows(self.logits[:, low_start:low_stop], low_start, first, self.resize_to[1])
        x = x[:, :, : self.crop_to[1]]
        return _resize_rows(x, mid_start, second, self.size[1])


def _row_weights(in_rows, out_rows, start, stop, device):
    """
    Bilinear (align_corners=False) source rows of output rows [start, stop) when resizing
    ``in_rows`` to ``out_rows`` (``bilinear_taps``, F.interpolate's rule): (top (R,) int64,
    bottom (R,) int64, weight of bottom (R,) float32) on ``device``.
    """
    top, bottom, _, weight = bilinear_taps(in_rows, out_rows)
    return tuple(torch.from_numpy(x[start:stop]).to(device) for x in (top, bottom, weight))


def _needed_rows(weights):
    """The source rows [first, last + 1) that ``_row_weights``' output reads."""
    top, bottom, _ = weights
    return int(top[0]), int(bottom[-1]) + 1


def _resize_rows(x, first_row, weights, out_width):
    """
    Rows of a bilinear resize: ``x`` (C, n, w) holds source rows from ``first_row`` on;
    returns (C, R, out_width) for the output rows of ``weights`` (see ``_row_weights``).
    """
    top, bottom, weight = weights
    top, bottom = top - first_row, bottom - first_row
    rows = torch.lerp(x[:, top], x[:, bottom], weight[:, None].to(x.dtype))
    if rows.shape[-1] != out_width:
        rows = _bilinear(rows, (rows.shape[1], out_width))  # rows unchanged: a columns resize
    return rows


def semantic_labels(mask_cls, masks, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    The class of each pixel, argmax of :func:`semantic_inference`'s scores, computed in
    chunks of rows without the (K, H, W) scores.

    Returns:
        Tensor: (H, W) int64 contiguous class ids.
    """
    class_probs = F.softmax(mask_cls.to(masks.logits.dtype), dim=-1)[:, :-1]
    height, width = masks.size
    labels = torch.empty((height, width), dtype=torch.int64, device=mask_cls.device)
    step = rows_per_chunk(masks.num_queries + class_probs.shape[1], width, chunk_elements)
    for start in range(0, height, step):
        stop = min(start + step, height)
        probs = masks.rows(start, stop).sigmoid()
        labels[start:stop] = torch.einsum("qk,qhw->khw", class_probs, probs).argmax(0)
    return labels


def resize_semantic(scores, output_size, labels, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    Resize (bilinear) semantic scores (K, h, w) to ``output_size`` (H, W): the (K, H, W)
    scores, or with ``labels`` their argmax (H, W) int64, computed in chunks of rows.
    """
    if not labels:
        return _bilinear(scores, output_size)
    height, width = output_size
    result = torch.empty((height, width), dtype=torch.int64, device=scores.device)
    step = rows_per_chunk(scores.shape[0], width, chunk_elements)
    for start in range(0, height, step):
        stop = min(start + step, height)
        weights = _row_weights(scores.shape[1], height, start, stop, scores.device)
        first, last = _needed_rows(weights)
        result[start:stop] = _resize_rows(scores[:, first:last], first, weights, width).argmax(0)
    return result


class _SemanticScores:
    """Semantic scores (K, H, W): the sum over queries of class probability x mask probability."""

    def __init__(self, class_probs, size):
        self.class_probs = class_probs  # (Q, K) without "no object"
        self.num_queries = class_probs.shape[0]
        self.scores = None
        self.size = size

    def queries(self):
        return list(range(self.num_queries))

    def add(self, queries, logits, probs):
        part = torch.einsum("qk,qhw->khw", self.class_probs[queries], probs)
        self.scores = part if self.scores is None else self.scores.add_(part)

    def result(self):
        if self.scores is None:
            return self.class_probs.new_zeros((self.class_probs.shape[1],) + tuple(self.size))
        return self.scores


class _PanopticSegments(PanopticMerge):
    """
    Non-overlapping segments from the confident queries, see :func:`panoptic_inference`;
    besides each pixel's running maximum and winner, the winner's mask probability.
    """

    def __init__(self, mask_cls, size, object_mask_threshold, overlap_threshold, thing_classes):
        num_classes = mask_cls.shape[-1] - 1
        scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
        keep = panoptic_keep(scores, labels, num_classes, object_mask_threshold)
        super().__init__(scores, labels, keep, keep.nonzero()[:, 0].tolist(), size,
                         overlap_threshold, thing_classes)
        self.device = mask_cls.device
        self.best = self.winner = self.winner_prob = None
        self.own_area = torch.zeros(len(self.kept), dtype=torch.int64, device=self.device)

    def _add_mask(self, rank, mask):
        self.own_area[rank] = (mask >= 0.5).sum()
        weighted = self.scores[rank] * mask
        if self.best is None:
            self.best = weighted
            self.winner = torch.full_like(mask, rank, dtype=torch.int32)
            self.winner_prob = mask.clone()
            return
        better = weighted > self.best  # ties keep the earlier query, as argmax does
        torch.where(better, weighted, self.best, out=self.best)
        self.winner.masked_fill_(better, rank)
        torch.where(better, mask, self.winner_prob, out=self.winner_prob)

    def result(self):
        panoptic_seg = torch.zeros(self.size, dtype=torch.int32, device=self.device)
        num_kept = len(self.kept)
        if num_kept == 0:
            return panoptic_seg, []
        winner_owns = self.winner_prob >= 0.5  # (H, W) the winner's mask prob >= 0.5
        # (N, 3) areas of each kept query: won, own mask, segment (won & own); one host copy.
        areas = torch.stack(
            (
                torch.bincount(self.winner.flatten(), minlength=num_kept),
                self.own_area,
                torch.bincount(self.winner[winner_owns], minlength=num_kept),
            ),
            dim=1,
        ).tolist()
        segment_id_of_kept, segments_info = self.segments(areas)
        lookup = torch.tensor(segment_id_of_kept, dtype=torch.int32, device=self.device)
        torch.where(winner_owns, lookup[self.winner], panoptic_seg, out=panoptic_seg)
        return panoptic_seg, segments_info


def _mask_boxes(masks):
    """(N, H, W) bool -> (N, 4) float XYXY boxes enclosing the masks; zeros for empty masks."""
    return _boxes_from_projections(masks.any(dim=1), masks.any(dim=2))


def _boxes_from_projections(cols, rows):
    """
    (N, 4) float32 XYXY boxes on the device of the column (N, W) and row (N, H) projections
    (bool: any pixel set) of masks, by the shared rule (``boxes_from_projections``).
    """
    boxes = boxes_from_projections(cols.cpu().numpy(), rows.cpu().numpy())
    return torch.from_numpy(boxes).to(cols.device)


class _InstanceDetections:
    """The ``topk`` best (query, class) pairs with their masks, see :func:`instance_inference`."""

    def __init__(self, mask_cls, size, topk, thing_classes):
        class_scores = F.softmax(mask_cls, dim=-1)[:, :-1]  # (Q, K)
        query_idx, labels = top_pairs(class_scores.float().cpu().numpy(), topk, thing_classes)
        query_idx = torch.from_numpy(query_idx).to(mask_cls.device)
        self.labels = torch.from_numpy(labels).to(mask_cls.device)
        self.scores = class_scores[query_idx, self.labels]
        self.pair_queries = query_idx.tolist()
        num_pairs = len(self.pair_queries)
        device = mask_cls.device
        self.size = size
        self.masks = torch.empty((num_pairs,) + tuple(size), dtype=torch.bool, device=device)
        self.mask_scores = torch.empty(num_pairs, dtype=mask_cls.dtype, device=device)
        self.boxes = torch.empty((num_pairs, 4), dtype=torch.float32, device=device)

    def queries(self):
        return sorted(set(self.pair_queries))

    def add(self, queries, logits, probs):
        position = {q: j for j, q in enumerate(queries)}
        pairs = [i for i, q in enumerate(self.pair_queries) if q in position]
        if not pairs:
            return
        chunk_positions = [position[self.pair_queries[i]] for i in pairs]
        masks = logits[chunk_positions] > 0
        mask_probs = probs[chunk_positions]
        self.masks[pairs] = masks
        self.mask_scores[pairs] = (mask_probs * masks).flatten(1).sum(1) / (
            masks.flatten(1).sum(1) + 1e-6
        )
        self.boxes[pairs] = _mask_boxes(masks)

    def result(self):
        result = Instances(self.size)
        result.pred_masks = self.masks
        result.pred_boxes = Boxes(self.boxes)
        result.scores = self.scores * self.mask_scores
        result.pred_classes = self.labels
        return result


def postprocess(
    mask_cls,
    masks,
    *,
    semantic_on=False,
    panoptic_on=False,
    instance_on=False,
    object_mask_threshold=0.0,
    overlap_threshold=0.0,
    thing_classes=None,
    topk=100,
    chunk_elements=DEFAULT_CHUNK_ELEMENTS,
):
    """
    The semantic, panoptic and instance results of one image, sharing one pass over its
    queries' upsampled masks (see the module docstring).

    Args:
        mask_cls: (Q, K+1) class logits.
        masks (MaskLogits): the mask logits at the output size (H, W).
        semantic_on, panoptic_on, instance_on (bool): which results to compute.
        object_mask_threshold, overlap_threshold, thing_classes: see :func:`panoptic_inference`
            (``thing_classes`` also filters the instances when given).
        topk (int): detections of the instance results, see :func:`instance_inference`.
        chunk_elements (int): values of one chunk of upsampled logits (at least one query).

    Returns:
        dict: "sem_seg" (K, H, W), "panoptic_seg" (panoptic_seg, segments_info) and
        "instances", as the three functions below return them, for the tasks that are on.
    """
    mask_cls = mask_cls.to(masks.logits.dtype)
    tasks = {}
    if semantic_on:
        tasks["sem_seg"] = _SemanticScores(F.softmax(mask_cls, dim=-1)[:, :-1], masks.size)
    if panoptic_on:
        tasks["panoptic_seg"] = _PanopticSegments(
            mask_cls, masks.size, object_mask_threshold, overlap_threshold, thing_classes
        )
    if instance_on:
        tasks["instances"] = _InstanceDetections(mask_cls, masks.size, topk, thing_classes)

    return run_tasks_in_chunks(tasks, masks, torch.sigmoid, chunk_elements)


def semantic_inference(mask_cls, mask_pred, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    Per-pixel class scores: sum over queries of class probability times mask probability.

    Args:
        mask_cls: (Q, K+1) class logits; mask_pred: (Q, H, W) mask logits or :class:`MaskLogits`.

    Returns:
        Tensor: (K, H, W) scores.
    """
    masks = mask_pred if isinstance(mask_pred, MaskLogits) else MaskLogits(mask_pred)
    return postprocess(mask_cls, masks, semantic_on=True, chunk_elements=chunk_elements)[
        "sem_seg"
    ]


def panoptic_inference(mask_cls, mask_pred, object_mask_threshold, overlap_threshold,
                       thing_classes, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    Non-overlapping segments from the confident queries.

    Queries predicting "no object" or with a class score <= ``object_mask_threshold`` are
    dropped. Each pixel goes to the query with the highest score * mask probability, if that
    mask probability is >= 0.5. A query keeps its segment only if the area it wins is at least
    ``overlap_threshold`` times its own mask area (mask probability >= 0.5). Segments of the
    same stuff class are merged into one.

    Args:
        mask_cls: (Q, K+1) class logits; mask_pred: (Q, H, W) mask logits or :class:`MaskLogits`.
        object_mask_threshold (float), overlap_threshold (float): see above.
        thing_classes (set[int]): contiguous ids of the thing classes.

    Returns:
        tuple: (panoptic_seg, segments_info): panoptic_seg (H, W) int32 segment ids, 0 = void;
        segments_info a list with one dict per segment id 1, 2, ...:
        {"id": int, "category_id": int (contiguous), "isthing": bool}, and for things "score"
        (the query's class probability, which Detectron2's Visualizer draws beside the name).
    """
    masks = mask_pred if isinstance(mask_pred, MaskLogits) else MaskLogits(mask_pred)
    return postprocess(
        mask_cls, masks, panoptic_on=True, object_mask_threshold=object_mask_threshold,
        overlap_threshold=overlap_threshold, thing_classes=thing_classes,
        chunk_elements=chunk_elements,
    )["panoptic_seg"]


def instance_inference(mask_cls, mask_pred, topk, thing_classes=None,
                       chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    The ``topk`` highest (query, class) pairs (``top_pairs``: in descending order of class
    probability), scored by class probability times the mean mask probability inside the binary
    mask (mask logit > 0).

    Args:
        mask_cls: (Q, K+1) class logits; mask_pred: (Q, H, W) mask logits or :class:`MaskLogits`.
        topk (int): number of detections (at most Q * K are returned).
        thing_classes (set[int] or None): if given, only pairs of these classes are kept
            (panoptic models predict stuff classes too).

    Returns:
        Instances: of image size (H, W), with "pred_masks" (N, H, W) bool, "pred_boxes" Boxes
        (N, 4) XYXY enclosing the masks, "scores" (N,), "pred_classes" (N,) int64 contiguous ids.
    """
    masks = mask_pred if isinstance(mask_pred, MaskLogits) else MaskLogits(mask_pred)
    return postprocess(
        mask_cls, masks, instance_on=True, thing_classes=thing_classes, topk=topk,
        chunk_elements=chunk_elements,
    )["instances"]


def _nearest_index(in_size, out_size, device):
    """``nearest_index`` (the shared rule) as a (out_size,) int64 tensor on ``device``."""
    return torch.from_numpy(nearest_index(in_size, out_size)).to(device)


def resize_results(results, output_size, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    Resize the panoptic, instance and semantic label results of :func:`postprocess` /
    :class:`MaskFormer` to ``output_size`` (H, W) by nearest neighbour: up in the fast mode
    (post-processing at the network's resolution), down to draw a large image. Instance boxes
    are those of the resized masks. Other results ("sem_seg" scores) are returned unchanged.
    """
    results = dict(results)
    height, width = output_size
    if "panoptic_seg" in results and tuple(results["panoptic_seg"][0].shape) != (height, width):
        panoptic_seg, segments_info = results["panoptic_seg"]
        results["panoptic_seg"] = (_nearest_map(panoptic_seg, output_size), segments_info)
    if "instances" in results and tuple(results["instances"].image_size) != (height, width):
        small = results["instances"]
        masks = small.pred_masks
        rows = _nearest_index(masks.shape[1], height, masks.device)
        cols = _nearest_index(masks.shape[2], width, masks.device)
        large = torch.empty((len(small), height, width), dtype=torch.bool, device=masks.device)
        per_chunk = queries_per_chunk(output_size, chunk_elements)
        for start in range(0, len(small), per_chunk):
            large[start:start + per_chunk] = masks[start:start + per_chunk][:, rows][:, :, cols]
        boxes = _boxes_from_projections(masks.any(dim=1)[:, cols], masks.any(dim=2)[:, rows])
        result = Instances((height, width))
        result.pred_masks = large
        result.pred_boxes = Boxes(boxes)
        result.scores = small.scores
        result.pred_classes = small.pred_classes
        results["instances"] = result
    if "sem_seg_labels" in results and tuple(results["sem_seg_labels"].shape) != (height, width):
        results["sem_seg_labels"] = _nearest_map(results["sem_seg_labels"], output_size)
    return results


def _nearest_map(values, size):
    """(h, w) map (ids, labels) resized to ``size`` (H, W) by nearest neighbour."""
    rows = _nearest_index(values.shape[0], size[0], values.device)
    cols = _nearest_index(values.shape[1], size[1], values.device)
    return values[rows][:, cols]


def panoptic_categories(panoptic_seg, segments_info):
    """
    The category of each pixel of a panoptic result, to compare two results whose segment ids
    differ: (H, W) int64 contiguous category ids, -1 for void.
    """
    lookup = torch.full((len(segments_info) + 1,), -1, dtype=torch.int64,
                        device=panoptic_seg.device)
    for segment in segments_info:
        lookup[segment["id"]] = segment["category_id"]
    return lookup[panoptic_seg.long()]
