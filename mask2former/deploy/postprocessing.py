"""
MaskFormer's inference (``MaskFormer.inference`` in mask2former/maskformer_model.py and
mask2former/modeling/postprocessing.py) in numpy, applied to the outputs of an exported graph,
and the decisions that both implementations share.

**Shared definitions.** The decisions of the inference are made here once, torch-free, and the
PyTorch post-processing imports them: which queries panoptic inference keeps
(:func:`panoptic_keep`), the segment decisions of the panoptic merge (:func:`panoptic_segments`)
and its bookkeeping (:class:`PanopticMerge`), which (query, class) pairs instance inference
keeps (:func:`top_pairs`), the boxes enclosing masks (:func:`boxes_from_projections`), the pass
over chunks of queries that feeds every task (:func:`run_tasks_in_chunks`), when the semantic
result is made at the output size (:func:`semantic_at_output_size`), the chunk sizes
(:func:`chunk_elements`, :func:`queries_per_chunk`, :func:`rows_per_chunk`) and the resize rules
(:func:`mask2former.deploy.resize.bilinear_taps` and ``nearest_index``). The per-pixel work
(resizing masks, sigmoid, the semantic sums, the panoptic winner of each pixel, instance masks)
has two implementations, this numpy one and the torch one: the torch one keeps tensors on their
device and in their dtype, this one runs where torch is not installed.

**Bounded memory.** As in the PyTorch post-processing, memory grows with the outputs, not with
queries x pixels: :func:`postprocess` resizes the mask logits of a chunk of queries at a time (at
most ``chunk_elements`` values at the output size, at least one query), computes each chunk's
sigmoid once for all tasks, and each task keeps only what it returns; the panoptic winner of
each pixel is a running first maximum. :func:`semantic_labels` and :func:`resize_semantic` make
the semantic label map in bands of rows without the (K, H, W) scores. Resizing some queries or
rows gives the values of resizing all at once to the bit, so panoptic segments and instances
equal the unchunked computation; semantic scores are summed chunk by chunk (equal to float
rounding, and to the bit when one chunk holds all queries).

Results are numpy arrays:

    * "sem_seg": (K, height, width) float32 per-class scores;
    * "sem_seg_labels": (height, width) int64 argmax of those scores
      (``InferenceSettings.semantic_output`` "labels", instead of "sem_seg");
    * "panoptic_seg": (panoptic_seg (height, width) int32 segment ids, 0 = void, segments_info
      [{"id", "category_id", "isthing", and "score" for things}]);
    * "instances": {"pred_masks": (N, height, width) bool, "pred_boxes": (N, 4) float32 XYXY
      boxes enclosing the masks (zeros for an empty mask), "scores": (N,) float32,
      "pred_classes": (N,) int64}, in descending order of class score.
"""
import numpy as np

from .resize import nearest_index, resize_map_rows, resize_maps

__all__ = [
    "MaskLogits",
    "postprocess",
    "semantic_inference",
    "panoptic_inference",
    "instance_inference",
    "semantic_labels",
    "resize_semantic",
    "resize_results",
    "inference_results",
    "panoptic_keep",
    "panoptic_segments",
    "top_pairs",
    "boxes_from_projections",
    "run_tasks_in_chunks",
    "PanopticMerge",
    "semantic_at_output_size",
    "chunk_elements",
    "queries_per_chunk",
    "rows_per_chunk",
    "DEFAULT_CHUNK_MB",
    "DEFAULT_CHUNK_ELEMENTS",
]

# MODEL.MASK_FORMER.TEST.POSTPROCESS_CHUNK_MB's default.
DEFAULT_CHUNK_MB = 64


# ------------------------------------------------------------------ shared definitions
def chunk_elements(chunk_mb):
    """float32 values in a chunk of ``chunk_mb`` MiB (``POSTPROCESS_CHUNK_MB``), at least 1."""
    return max(1, int(chunk_mb * 2**20) // 4)


DEFAULT_CHUNK_ELEMENTS = chunk_elements(DEFAULT_CHUNK_MB)


def queries_per_chunk(size, chunk_elements):
    """Queries whose (H, W) = ``size`` maps fit in ``chunk_elements`` values; at least 1."""
    return max(1, chunk_elements // max(1, size[0] * size[1]))


def rows_per_chunk(channels, width, chunk_elements):
    """Rows of (channels, rows, width) maps that fit in ``chunk_elements`` values; at least 1."""
    return max(1, chunk_elements // max(1, channels * width))


def semantic_at_output_size(semantic_on, panoptic_on, instance_on,
                            sem_seg_postprocess_before_inference,
                            postprocess_at_network_resolution):
    """
    Whether the semantic result is computed from the mask logits at the output size (True),
    rather than at the input size and then resized (False): at the output size when the other
    tasks resize the masks there anyway, or when asked (``SEM_SEG_POSTPROCESSING_BEFORE_
    INFERENCE``), unless everything is post-processed at the network's resolution.
    """
    resize_first = sem_seg_postprocess_before_inference or panoptic_on or instance_on
    return semantic_on and resize_first and not postprocess_at_network_resolution


def panoptic_keep(scores, labels, num_classes, object_mask_threshold):
    """
    The queries panoptic inference keeps: those predicting a class (not "no object", label
    ``num_classes``) with a class probability above ``object_mask_threshold``.

    Args:
        scores, labels: (Q,) each query's highest class probability and its class, numpy
            arrays or torch tensors (the rule uses operators both have).

    Returns:
        (Q,) bool, of the kind of the inputs.
    """
    return (labels != num_classes) & (scores > object_mask_threshold)


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


def top_pairs(class_scores, topk, thing_ids=None):
    """
    The (query, class) pairs instance inference keeps: the ``topk`` highest class probabilities
    (equal ones in query-major order), then, with ``thing_ids``, those of thing classes.

    Args:
        class_scores: (Q, K) float class probabilities without "no object", numpy.
        topk (int): pairs before the thing filter (at most Q * K are).
        thing_ids (collection of int or None): contiguous ids of the classes to keep.

    Returns:
        (query_idx (N,) int64, labels (N,) int64), in descending order of class probability.
    """
    num_classes = class_scores.shape[1]
    flat = class_scores.ravel()
    top = np.argsort(-flat, kind="stable")[: min(topk, flat.size)]
    query_idx, labels = top // num_classes, top % num_classes
    if thing_ids is not None:
        is_thing = np.isin(labels, list(thing_ids))
        query_idx, labels = query_idx[is_thing], labels[is_thing]
    return query_idx, labels


def boxes_from_projections(columns, rows):
    """
    Boxes of masks from their projections, as Detectron2's ``BitMasks.get_bounding_boxes``:
    [x0, y0, x1 + 1, y1 + 1] of the set pixels, zeros for an empty mask.

    Args:
        columns: (N, W) bool, whether each column holds a pixel of the mask;
        rows: (N, H) bool, likewise for each row (numpy).

    Returns:
        (N, 4) float32 XYXY boxes.
    """
    boxes = np.zeros((columns.shape[0], 4), dtype=np.float32)
    present = columns.any(1) & rows.any(1)
    if present.any():
        columns, rows = columns[present], rows[present]
        boxes[present] = np.stack((
            columns.argmax(1), rows.argmax(1),
            columns.shape[1] - columns[:, ::-1].argmax(1), rows.shape[1] - rows[:, ::-1].argmax(1),
        ), axis=1)
    return boxes


def run_tasks_in_chunks(tasks, masks, sigmoid, chunk_elements):
    """
    The pass over the resized masks that feeds the tasks of one image: the queries that some
    task needs (``task.queries()``), in increasing order, a chunk at a time (at most
    ``chunk_elements`` values at the output size, at least one query): their logits
    ``masks.queries(chunk)`` and ``sigmoid`` of them, given to every task
    (``task.add(chunk, logits, probs)``). Written for numpy and torch alike: ``masks``,
    ``sigmoid`` and the tasks are those of one library.

    Args:
        tasks (dict): name -> task.
        masks: ``MaskLogits`` (this module's or mask2former/modeling/postprocessing.py's).

    Returns:
        dict: name -> ``task.result()``.
    """
    needed = sorted(set().union(*(task.queries() for task in tasks.values())))
    step = queries_per_chunk(masks.size, chunk_elements)
    for start in range(0, len(needed), step):
        queries = needed[start:start + step]
        logits = masks.queries(queries)
        probs = sigmoid(logits)
        for task in tasks.values():
            task.add(queries, logits, probs)
    return {name: task.result() for name, task in tasks.items()}


class PanopticMerge:
    """
    The panoptic merge of one image as a task of :func:`run_tasks_in_chunks`: the bookkeeping
    both post-processings share. The per-pixel part, ``_add_mask(rank, mask)``, is each
    library's own (numpy below, torch in mask2former/modeling/postprocessing.py: they keep
    their arrays on their own devices), as is ``result()``.

    Kept queries are added in increasing order; each pixel's winner is a running first maximum
    of score x mask probability, which equals the argmax over all kept queries without their
    (N, H, W) probabilities.

    Args:
        scores, labels: (Q,) each query's highest class probability and its class (arrays of
            the subclass's library).
        keep: (Q,) bool, :func:`panoptic_keep`; kept: the indices where it is True (list).
        size: (H, W) output size.
        overlap_threshold, thing_ids: see :func:`panoptic_segments`.
    """

    def __init__(self, scores, labels, keep, kept, size, overlap_threshold, thing_ids):
        self.kept = kept
        self.rank = {q: k for k, q in enumerate(kept)}
        self.scores, self.labels = scores[keep], labels[keep]
        self.size = tuple(size)
        self.overlap_threshold = overlap_threshold
        self.thing_ids = thing_ids

    def queries(self):
        return self.kept

    def add(self, queries, logits, probs):
        for position, query in enumerate(queries):
            rank = self.rank.get(query)
            if rank is not None:
                self._add_mask(rank, probs[position])

    def _add_mask(self, rank, mask):
        """Add the (H, W) mask probabilities of the kept query of this rank."""
        raise NotImplementedError

    def segments(self, areas):
        """:func:`panoptic_segments` of the kept queries, given their areas."""
        return panoptic_segments(self.labels.tolist(), self.scores.tolist(), areas,
                                 self.overlap_threshold, self.thing_ids)


# ------------------------------------------------------------------ numpy inference
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


class MaskLogits:
    """
    The (Q, h, w) mask logits of the graph (at the input image's resolution) resized on demand
    to ``size`` (H, W), some queries or some rows at a time, with the values
    :func:`~mask2former.deploy.resize.resize_maps` gives all of them (numpy counterpart of
    ``MaskLogits`` in mask2former/modeling/postprocessing.py).

    Args:
        logits: (Q, h, w) float32 mask logits.
        size: (H, W) output size; None: (h, w), no resize.
    """

    def __init__(self, logits, size=None):
        self.logits = logits
        self.size = tuple(size) if size else tuple(logits.shape[-2:])

    @property
    def num_queries(self):
        return self.logits.shape[0]

    def queries(self, index):
        """Logits (N, H, W) of the queries ``index`` (list of ints)."""
        return resize_maps(self.logits[index], *self.size)

    def rows(self, start, stop):
        """Logits (Q, stop - start, W) of all queries in output rows [start, stop)."""
        return resize_map_rows(self.logits, *self.size, start, stop)


class _SemanticScores:
    """Semantic scores (K, H, W): the sum over queries of class probability x mask probability."""

    def __init__(self, class_probs, size):
        self.class_probs = class_probs  # (Q, K) without "no object"
        self.size = size
        self.scores = None

    def queries(self):
        return list(range(self.class_probs.shape[0]))

    def add(self, queries, logits, probs):
        part = self.class_probs[queries].T @ probs.reshape(len(queries), -1)
        if self.scores is None:
            self.scores = part
        else:
            self.scores += part

    def result(self):
        num_classes = self.class_probs.shape[1]
        if self.scores is None:
            return np.zeros((num_classes,) + self.size, dtype=np.float32)
        return self.scores.reshape((num_classes,) + self.size).astype(np.float32, copy=False)


class _PanopticSegments(PanopticMerge):
    """
    Non-overlapping segments from the confident queries (see :func:`panoptic_inference`);
    besides each pixel's running maximum and winner, whether the winner's own mask holds it.
    """

    def __init__(self, class_probs_all, size, object_mask_threshold, overlap_threshold,
                 thing_ids):
        num_classes = class_probs_all.shape[-1] - 1
        labels, scores = class_probs_all.argmax(-1), class_probs_all.max(-1)
        keep = panoptic_keep(scores, labels, num_classes, object_mask_threshold)
        super().__init__(scores, labels, keep, np.flatnonzero(keep).tolist(), size,
                         overlap_threshold, thing_ids)
        self.best = self.winner = self.winner_owns = None
        self.own_area = [0] * len(self.kept)

    def _add_mask(self, rank, mask):
        owns = mask >= 0.5
        self.own_area[rank] = int(np.count_nonzero(owns))
        weighted = self.scores[rank] * mask
        if self.best is None:
            self.best = weighted
            self.winner = np.zeros(self.size, dtype=np.int32)
            self.winner_owns = owns
            return
        better = weighted > self.best  # ties keep the earlier query, as argmax does
        np.copyto(self.best, weighted, where=better)
        np.copyto(self.winner, rank, where=better)
        np.copyto(self.winner_owns, owns, where=better)

    def result(self):
        panoptic_seg = np.zeros(self.size, dtype=np.int32)
        num_kept = len(self.kept)
        if num_kept == 0:
            return panoptic_seg, []
        areas = zip(
            np.bincount(self.winner.ravel(), minlength=num_kept).tolist(),
            self.own_area,
            np.bincount(self.winner[self.winner_owns], minlength=num_kept).tolist(),
        )
        segment_ids, segments_info = self.segments(areas)
        lookup = np.asarray(segment_ids, dtype=np.int32)
        np.copyto(panoptic_seg, lookup[self.winner], where=self.winner_owns)
        return panoptic_seg, segments_info


class _InstanceDetections:
    """The best (query, class) pairs with their masks (see :func:`instance_inference`)."""

    def __init__(self, class_probs, size, topk, thing_ids):
        self.pair_queries, labels = top_pairs(class_probs, topk, thing_ids)
        self.class_scores = class_probs[self.pair_queries, labels]
        self.labels = labels
        num_pairs = len(labels)
        self.size = size
        self.masks = np.empty((num_pairs,) + size, dtype=bool)
        self.mask_scores = np.empty(num_pairs, dtype=np.float32)
        self.boxes = np.empty((num_pairs, 4), dtype=np.float32)

    def queries(self):
        return sorted(set(self.pair_queries.tolist()))

    def add(self, queries, logits, probs):
        position = {q: j for j, q in enumerate(queries)}
        for pair, query in enumerate(self.pair_queries.tolist()):
            if query not in position:
                continue
            j = position[query]
            mask = logits[j] > 0
            inside = mask.reshape(1, -1)
            self.masks[pair] = mask
            self.mask_scores[pair] = (probs[j].reshape(1, -1) * inside).sum(1)[0] / (
                inside.sum(1).astype(np.float32)[0] + np.float32(1e-6)
            )
            self.boxes[pair] = boxes_from_projections(mask.any(0)[None], mask.any(1)[None])[0]

    def result(self):
        return {
            "pred_masks": self.masks,
            "pred_boxes": self.boxes,
            "scores": (self.class_scores * self.mask_scores).astype(np.float32),
            "pred_classes": self.labels.astype(np.int64),
        }


def postprocess(mask_cls, masks, *, semantic_on=False, panoptic_on=False, instance_on=False,
                object_mask_threshold=0.0, overlap_threshold=0.0, thing_ids=None, topk=100,
                chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    ``postprocess`` of mask2former/modeling/postprocessing.py in numpy: the results of the
    tasks that are on, from one pass over the queries' resized masks (``masks``, this
    module's :class:`MaskLogits`); ``thing_ids`` are the contiguous thing ids (``thing_classes``
    there). Results as in the module docstring.
    """
    class_probs = _softmax(mask_cls)
    tasks = {}
    if semantic_on:
        tasks["sem_seg"] = _SemanticScores(class_probs[:, :-1], masks.size)
    if panoptic_on:
        tasks["panoptic_seg"] = _PanopticSegments(
            class_probs, masks.size, object_mask_threshold, overlap_threshold, thing_ids
        )
    if instance_on:
        tasks["instances"] = _InstanceDetections(class_probs[:, :-1], masks.size, topk,
                                                 thing_ids)

    return run_tasks_in_chunks(tasks, masks, _sigmoid, chunk_elements)


def semantic_inference(mask_cls, mask_pred, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    Args:
        mask_cls: (Q, K + 1) class logits; mask_pred: (Q, H, W) mask logits or
            :class:`MaskLogits`.

    Returns:
        (K, H, W) float32: sum over queries of class probability times mask probability.
    """
    masks = mask_pred if isinstance(mask_pred, MaskLogits) else MaskLogits(mask_pred)
    return postprocess(mask_cls, masks, semantic_on=True, chunk_elements=chunk_elements)[
        "sem_seg"
    ]


def panoptic_inference(mask_cls, mask_pred, object_mask_threshold, overlap_threshold,
                       thing_ids, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    Non-overlapping segments from the confident queries (``panoptic_inference`` of
    mask2former/modeling/postprocessing.py: its docstring states the rules).

    Args:
        mask_cls: (Q, K + 1) class logits; mask_pred: (Q, H, W) mask logits or
            :class:`MaskLogits`.
        object_mask_threshold, overlap_threshold (float): the panoptic thresholds.
        thing_ids (collection of int): contiguous ids of the thing classes.

    Returns:
        (panoptic_seg (H, W) int32, segments_info list of dicts).
    """
    masks = mask_pred if isinstance(mask_pred, MaskLogits) else MaskLogits(mask_pred)
    return postprocess(
        mask_cls, masks, panoptic_on=True, object_mask_threshold=object_mask_threshold,
        overlap_threshold=overlap_threshold, thing_ids=thing_ids, chunk_elements=chunk_elements,
    )["panoptic_seg"]


def instance_inference(mask_cls, mask_pred, topk, thing_ids=None,
                       chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    The pairs of :func:`top_pairs`, scored by class probability times the mean mask
    probability inside the binary mask (mask logit > 0).

    Args:
        mask_cls: (Q, K + 1) class logits; mask_pred: (Q, H, W) mask logits or
            :class:`MaskLogits`.
        topk (int): number of pairs (at most Q * K).
        thing_ids (collection of int or None): if given, only pairs of these classes are kept.

    Returns:
        dict: see the module docstring.
    """
    masks = mask_pred if isinstance(mask_pred, MaskLogits) else MaskLogits(mask_pred)
    return postprocess(mask_cls, masks, instance_on=True, thing_ids=thing_ids, topk=topk,
                       chunk_elements=chunk_elements)["instances"]


def semantic_labels(mask_cls, masks, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    The class of each pixel, argmax of :func:`semantic_inference`'s scores, computed in bands
    of rows without the (K, H, W) scores.

    Args:
        mask_cls: (Q, K + 1) class logits; masks (MaskLogits): the mask logits at (H, W).

    Returns:
        (H, W) int64 contiguous class ids.
    """
    class_probs = _softmax(mask_cls)[:, :-1]
    height, width = masks.size
    labels = np.empty((height, width), dtype=np.int64)
    step = rows_per_chunk(masks.num_queries + class_probs.shape[1], width, chunk_elements)
    for start in range(0, height, step):
        stop = min(start + step, height)
        probs = _sigmoid(masks.rows(start, stop))
        scores = class_probs.T @ probs.reshape(len(probs), -1)
        labels[start:stop] = scores.reshape(-1, stop - start, width).argmax(0)
    return labels


def resize_semantic(scores, output_size, labels, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    Resize (bilinear) semantic scores (K, h, w) to ``output_size`` (H, W): the (K, H, W) scores,
    or with ``labels`` their argmax (H, W) int64, made in bands of rows.
    """
    height, width = output_size
    if not labels:
        return resize_maps(scores, height, width)
    result = np.empty((height, width), dtype=np.int64)
    step = rows_per_chunk(scores.shape[0], width, chunk_elements)
    for start in range(0, height, step):
        stop = min(start + step, height)
        result[start:stop] = resize_map_rows(scores, height, width, start, stop).argmax(0)
    return result


def resize_results(results, output_size, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    """
    Resize the panoptic ids, instance masks and semantic label map of :func:`postprocess` to
    ``output_size`` (H, W) by nearest neighbour (``nearest_index``), the instance masks a
    chunk at a time; instance boxes are those of the resized masks. "sem_seg" scores are
    returned unchanged.
    """
    results = dict(results)
    height, width = output_size
    if "panoptic_seg" in results and results["panoptic_seg"][0].shape != (height, width):
        panoptic_seg, segments_info = results["panoptic_seg"]
        results["panoptic_seg"] = (_nearest_map(panoptic_seg, output_size), segments_info)
    if "instances" in results and results["instances"]["pred_masks"].shape[1:] != (height, width):
        small = results["instances"]["pred_masks"]
        rows, columns = nearest_index(small.shape[1], height), nearest_index(small.shape[2], width)
        large = np.empty((len(small), height, width), dtype=bool)
        step = queries_per_chunk(output_size, chunk_elements)
        for start in range(0, len(small), step):
            large[start:start + step] = small[start:start + step][:, rows][:, :, columns]
        boxes = boxes_from_projections(small.any(1)[:, columns], small.any(2)[:, rows])
        results["instances"] = dict(results["instances"], pred_masks=large, pred_boxes=boxes)
    if "sem_seg_labels" in results and results["sem_seg_labels"].shape != (height, width):
        results["sem_seg_labels"] = _nearest_map(results["sem_seg_labels"], output_size)
    return results


def _nearest_map(values, size):
    """(h, w) map (ids, labels) resized to ``size`` (H, W) by nearest neighbour."""
    rows = nearest_index(values.shape[0], size[0])
    columns = nearest_index(values.shape[1], size[1])
    return values[np.ix_(rows, columns)]


def inference_results(mask_cls, mask_pred, height, width, settings):
    """
    One image's results at the output size, as ``MaskFormer.inference`` computes them with
    the same settings (tasks, thresholds, semantic output, post-processing at the network
    resolution, chunk size).

    Args:
        mask_cls: (Q, K + 1) class logits.
        mask_pred: (Q, H, W) mask logits at the input image's resolution (the graph's output).
        height, width: output size (the original image's; (H, W) when it was not resized).
        settings: :class:`~mask2former.deploy.deploy_info.InferenceSettings`.

    Returns:
        dict with "sem_seg" or "sem_seg_labels", "panoptic_seg" and/or "instances" (see the
        module docstring).
    """
    output_size = (height, width)
    fast = settings.postprocess_at_network_resolution
    labels = settings.semantic_output == "labels"
    chunk = chunk_elements(settings.postprocess_chunk_mb)
    semantic_at_output = semantic_at_output_size(
        settings.semantic_on, settings.panoptic_on, settings.instance_on,
        settings.sem_seg_postprocess_before_inference, fast,
    )
    masks = MaskLogits(mask_pred, None if fast else output_size)
    results = postprocess(
        mask_cls, masks, semantic_on=semantic_at_output and not labels,
        panoptic_on=settings.panoptic_on, instance_on=settings.instance_on,
        object_mask_threshold=settings.object_mask_threshold,
        overlap_threshold=settings.overlap_threshold, thing_ids=settings.thing_ids,
        topk=settings.test_topk_per_image, chunk_elements=chunk,
    )
    if fast:
        results = resize_results(results, output_size, chunk)
    if semantic_at_output and labels:
        results["sem_seg_labels"] = semantic_labels(mask_cls, masks, chunk)
    elif settings.semantic_on and not semantic_at_output:
        scores = semantic_inference(mask_cls, mask_pred, chunk)
        key = "sem_seg_labels" if labels else "sem_seg"
        results[key] = resize_semantic(scores, output_size, labels, chunk)
    return results
