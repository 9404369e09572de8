"""
Semantic, panoptic and instance post-processing of one image's (class, mask) predictions, in
PyTorch and (the same decisions) in the numpy runner of exported models.
"""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import BitMasks

from deploy_checks import assert_same_results
from mask2former.deploy import postprocessing as numpy_postprocessing
from mask2former.modeling.postprocessing import (
    MaskLogits,
    instance_inference,
    panoptic_categories,
    panoptic_inference,
    postprocess,
    resize_semantic,
    semantic_inference,
    semantic_labels,
    resize_results,
)

K = 4  # classes 0, 1 are things, 2, 3 stuff
THINGS = {0, 1}
H, W = 12, 16


def confident_logits(classes):
    """(Q, K+1) logits with probability ~1 for the given class of each query (K = no object)."""
    logits = torch.full((len(classes), K + 1), -10.0)
    logits[torch.arange(len(classes)), torch.tensor(classes)] = 10.0
    return logits


def region(rows, cols):
    """(H, W) mask logits, +10 inside rows x cols and -10 elsewhere."""
    m = torch.full((H, W), -10.0)
    m[rows, cols] = 10.0
    return m


def test_semantic_inference_sums_class_times_mask_probabilities():
    generator = torch.Generator().manual_seed(0)
    mask_cls = torch.randn(5, K + 1, generator=generator)
    mask_pred = torch.randn(5, H, W, generator=generator)
    sem_seg = semantic_inference(mask_cls, mask_pred)
    assert sem_seg.shape == (K, H, W)
    probs = mask_cls.softmax(-1)
    expected = sum(probs[q, :K, None, None] * mask_pred[q].sigmoid() for q in range(5))
    torch.testing.assert_close(sem_seg, expected)


def test_panoptic_inference_on_a_known_layout():
    mask_cls = confident_logits([0, 2, 2, K, 1])
    mask_pred = torch.stack([
        region(slice(0, 12), slice(0, 6)),    # thing 0: left
        region(slice(0, 6), slice(6, 16)),    # stuff 2: top right
        region(slice(6, 10), slice(6, 16)),   # stuff 2 again: merged with the one above
        region(slice(0, 12), slice(0, 16)),   # no object: dropped
        region(slice(0, 4), slice(0, 3)),     # thing 1, 4x3, lies inside thing 0
    ])
    mask_cls[0, K] = 8.0  # thing 0 has score 0.88 < 1.0 of thing 1, which wins the shared pixels
    panoptic_seg, segments_info = panoptic_inference(mask_cls, mask_pred, 0.8, 0.8, THINGS)
    assert panoptic_seg.shape == (H, W) and panoptic_seg.dtype == torch.int32
    assert [s["id"] for s in segments_info] == [1, 2, 3]
    by_id = {s["id"]: s for s in segments_info}
    assert [(by_id[i]["category_id"], by_id[i]["isthing"]) for i in (1, 2, 3)] == [
        (0, True), (2, False), (1, True)
    ]
    # Things carry their class probability (drawn by the demo); stuff has none.
    assert by_id[1]["score"] == pytest.approx(torch.softmax(mask_cls[0], -1).max().item())
    assert by_id[3]["score"] > 0.99 and "score" not in by_id[2]
    # Thing 0 is kept: it loses 12 of its 72 pixels, 60 / 72 >= 0.8.
    expected = torch.zeros(H, W, dtype=torch.int32)
    expected[:, :6] = 1
    expected[:10, 6:] = 2
    expected[:4, :3] = 3
    torch.testing.assert_close(panoptic_seg, expected)


def test_panoptic_inference_thresholds():
    mask_cls = confident_logits([0, 1])
    mask_cls[0, K] = 8.0  # score 0.88
    mask_pred = torch.stack([region(slice(0, 4), slice(0, 4)), region(slice(0, 4), slice(0, 3))])
    # Thing 0 keeps 4 of its 16 pixels: dropped at overlap 0.8, kept at 0.2.
    _, info = panoptic_inference(mask_cls, mask_pred, 0.5, 0.8, THINGS)
    assert [s["category_id"] for s in info] == [1]
    seg, info = panoptic_inference(mask_cls, mask_pred, 0.5, 0.2, THINGS)
    assert [s["category_id"] for s in info] == [0, 1]
    assert (seg == 1).sum() == 4 and (seg == 2).sum() == 12
    # A query whose score is below the object threshold is ignored.
    unsure = mask_cls.clone()
    unsure[1] = 0.0
    _, info = panoptic_inference(unsure, mask_pred, 0.5, 0.8, THINGS)
    assert [s["category_id"] for s in info] == [0]
    # Nothing left: all void.
    seg, info = panoptic_inference(confident_logits([K, K]), mask_pred, 0.5, 0.8, THINGS)
    assert info == [] and (seg == 0).all()


def test_panoptic_ids_match_segments_info_on_random_predictions():
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        mask_cls = torch.randn(20, K + 1, generator=generator) * 4
        mask_pred = torch.randn(20, H, W, generator=generator) * 4
        seg, info = panoptic_inference(mask_cls, mask_pred, 0.3, 0.3, THINGS)
        ids = [s["id"] for s in info]
        assert ids == list(range(1, len(info) + 1))
        assert set(seg.unique().tolist()) - {0} == set(ids)
        stuff = [s["category_id"] for s in info if not s["isthing"]]
        assert len(stuff) == len(set(stuff))
        assert all(s["isthing"] == (s["category_id"] in THINGS) for s in info)


def test_instance_inference():
    mask_cls = confident_logits([0, 2, 1])
    mask_pred = torch.stack([
        region(slice(2, 5), slice(3, 9)),
        region(slice(0, 12), slice(0, 16)),
        region(slice(6, 12), slice(10, 12)),
    ])
    result = instance_inference(mask_cls, mask_pred, topk=5)
    assert result.image_size == (H, W) and len(result) == 5
    assert result.pred_masks.shape == (5, H, W) and result.pred_masks.dtype == torch.bool
    assert result.pred_classes.dtype == torch.int64

    order = result.scores.argsort(descending=True)[:3]
    assert sorted(result.pred_classes[order].tolist()) == [0, 1, 2]
    top = {c: i for c, i in zip(result.pred_classes[order].tolist(), order.tolist())}
    assert result.pred_boxes.tensor[top[0]].tolist() == [3.0, 2.0, 9.0, 5.0]
    assert result.pred_boxes.tensor[top[1]].tolist() == [10.0, 6.0, 12.0, 12.0]
    assert result.scores[top[0]].item() > 0.99

    things = instance_inference(mask_cls, mask_pred, topk=5, thing_classes=THINGS)
    assert set(things.pred_classes.tolist()) <= THINGS
    assert len(things) < 5
    assert len(instance_inference(mask_cls, mask_pred, topk=100)) == 3 * K


# ------------------------------------------------------------ chunks, label maps, fast mode
# A mid-size image: low-resolution logits -> padded input (96, 80) -> image (90, 77) -> output.
PADDED, IMAGE, OUTPUT = (96, 80), (90, 77), (301, 257)
ALL_TASKS = dict(semantic_on=True, panoptic_on=True, instance_on=True, object_mask_threshold=0.2,
                 overlap_threshold=0.3, thing_classes=THINGS, topk=10)


def _predictions(seed=0, num_queries=12):
    """(Q, K+1) class logits and smooth (Q, 24, 20) low-resolution mask logits, mostly < 0."""
    generator = torch.Generator().manual_seed(seed)
    mask_cls = torch.randn(num_queries, K + 1, generator=generator) * 3
    coarse = torch.randn(num_queries, 1, 6, 5, generator=generator) * 6
    low_res = F.interpolate(coarse, size=(24, 20), mode="bilinear", align_corners=False)[:, 0]
    return mask_cls, low_res - 3 + 0.3 * torch.randn(low_res.shape, generator=generator)


def _reference_panoptic(mask_cls, mask_pred, object_mask_threshold, overlap_threshold, things):
    """The panoptic merge written out on the whole (Q, H, W) logits: the reference."""
    scores, labels = mask_cls.softmax(-1).max(-1)
    keep = labels.ne(K) & (scores > object_mask_threshold)
    scores, labels, masks = scores[keep], labels[keep], mask_pred[keep].sigmoid()
    winner = (scores[:, None, None] * masks).argmax(0)
    winner_owns = masks.gather(0, winner[None])[0] >= 0.5
    panoptic_seg, segments_info, stuff_ids = torch.zeros(winner.shape, dtype=torch.int32), [], {}
    for k, (label, score) in enumerate(zip(labels.tolist(), scores.tolist())):
        won, own = (winner == k).sum().item(), (masks[k] >= 0.5).sum().item()
        segment = (winner == k) & winner_owns
        if won == 0 or own == 0 or not segment.any() or won / own < overlap_threshold:
            continue
        if label not in things and label in stuff_ids:
            panoptic_seg[segment] = stuff_ids[label]
            continue
        segment_id = len(segments_info) + 1
        panoptic_seg[segment] = segment_id
        segments_info.append({"id": segment_id, "category_id": label, "isthing": label in things})
        if label in things:
            segments_info[-1]["score"] = score
        else:
            stuff_ids[label] = segment_id
    return panoptic_seg, segments_info


def test_chunked_postprocessing_equals_resizing_all_masks_at_once():
    mask_cls, low_res = _predictions()
    masks = MaskLogits(low_res, PADDED, IMAGE, OUTPUT)
    # Today's pipeline: every query's mask resized at once, then the three post-processings.
    upsampled = F.interpolate(low_res[None], size=PADDED, mode="bilinear", align_corners=False)[0]
    mask_pred = sem_seg_postprocess(upsampled, IMAGE, *OUTPUT)
    whole = postprocess(mask_cls, MaskLogits(mask_pred), chunk_elements=10**12, **ALL_TASKS)
    chunked = postprocess(mask_cls, masks, chunk_elements=1, **ALL_TASKS)  # a query per chunk
    assert len(chunked["panoptic_seg"][1]) >= 5 and len(chunked["instances"]) >= 5

    reference = _reference_panoptic(mask_cls, mask_pred, 0.2, 0.3, THINGS)
    for result in (whole, chunked):
        assert torch.equal(result["panoptic_seg"][0], reference[0])
        assert result["panoptic_seg"][1] == reference[1]
    ours, theirs = chunked["instances"], whole["instances"]
    assert torch.equal(ours.pred_masks, theirs.pred_masks)
    assert torch.equal(ours.pred_classes, theirs.pred_classes)
    expected_boxes = BitMasks(theirs.pred_masks).get_bounding_boxes().tensor
    assert torch.equal(ours.pred_boxes.tensor, expected_boxes)
    torch.testing.assert_close(ours.scores, theirs.scores, rtol=0, atol=1e-6)
    # Semantic scores are summed chunk by chunk: equal up to float rounding.
    assert chunked["sem_seg"].shape == (K,) + OUTPUT
    torch.testing.assert_close(chunked["sem_seg"], whole["sem_seg"], rtol=0, atol=1e-5)


def test_numpy_post_processing_in_chunks_equals_pytorch_on_all_masks_at_once():
    """
    The runner's numpy post-processing, a query per chunk and a row per band, from the mask
    logits an exported graph outputs (resized to the padded input and cropped to the image),
    gives PyTorch's results of resizing every mask to the output size at once.
    """
    mask_cls, low_res = _predictions(seed=3)
    upsampled = F.interpolate(low_res[None], size=PADDED, mode="bilinear", align_corners=False)[0]
    whole = postprocess(mask_cls, MaskLogits(sem_seg_postprocess(upsampled, IMAGE, *OUTPUT)),
                        chunk_elements=10**12, **ALL_TASKS)
    graph_output = upsampled[:, : IMAGE[0], : IMAGE[1]].numpy()
    masks = numpy_postprocessing.MaskLogits(graph_output, OUTPUT)
    options = {k: v for k, v in ALL_TASKS.items() if k != "thing_classes"}
    chunked = numpy_postprocessing.postprocess(mask_cls.numpy(), masks, thing_ids=THINGS,
                                               chunk_elements=1, **options)
    assert len(whole["panoptic_seg"][1]) >= 5 and len(whole["instances"]) >= 5
    assert_same_results(whole, chunked)
    labels = numpy_postprocessing.semantic_labels(mask_cls.numpy(), masks, chunk_elements=1)
    assert (labels == whole["sem_seg"].argmax(0).numpy()).mean() > 0.999


def test_label_maps_are_the_argmax_of_the_scores():
    mask_cls, low_res = _predictions(seed=1)
    masks = MaskLogits(low_res, PADDED, IMAGE, OUTPUT)
    scores = semantic_inference(mask_cls, masks)
    labels = semantic_labels(mask_cls, masks, chunk_elements=5000)  # a few rows per chunk
    assert labels.shape == OUTPUT and labels.dtype == torch.int64
    # Rows are resized one axis at a time: equal but where two classes tie to float precision.
    assert (labels == scores.argmax(0)).float().mean() > 0.999

    small = semantic_inference(mask_cls, MaskLogits(low_res, PADDED, IMAGE))
    resized = resize_semantic(small, OUTPUT, labels=False)
    resized_labels = resize_semantic(small, OUTPUT, labels=True, chunk_elements=5000)
    assert (resized_labels == resized.argmax(0)).float().mean() > 0.999


def test_fast_mode_agrees_with_post_processing_at_the_output_size():
    mask_cls, low_res = _predictions(seed=2)
    exact = postprocess(mask_cls, MaskLogits(low_res, PADDED, IMAGE, OUTPUT), **ALL_TASKS)
    small = postprocess(mask_cls, MaskLogits(low_res, PADDED, IMAGE), **ALL_TASKS)
    fast = resize_results(small, OUTPUT, chunk_elements=OUTPUT[0] * OUTPUT[1])

    panoptic_seg, segments_info = fast["panoptic_seg"]
    assert panoptic_seg.shape == OUTPUT and segments_info == small["panoptic_seg"][1]
    agreement = panoptic_categories(*fast["panoptic_seg"]) == panoptic_categories(
        *exact["panoptic_seg"]
    )
    assert agreement.float().mean() > 0.97
    instances = fast["instances"]
    assert instances.image_size == OUTPUT and instances.pred_masks.shape[1:] == OUTPUT
    assert torch.equal(instances.pred_boxes.tensor,
                       BitMasks(instances.pred_masks).get_bounding_boxes().tensor)
    intersection = (instances.pred_masks & exact["instances"].pred_masks).flatten(1).sum(1)
    union = (instances.pred_masks | exact["instances"].pred_masks).flatten(1).sum(1)
    assert (intersection / union.clamp(min=1)).min() > 0.9


LARGE_IMAGE_CHILD = """
import resource, torch
from mask2former.modeling.postprocessing import MaskLogits, postprocess, semantic_labels
torch.manual_seed(0)
mask_cls = torch.randn(60, 11) * 3
masks = MaskLogits(torch.randn(60, 96, 80) * 4, (384, 320), (375, 300), (800, 640))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = postprocess(mask_cls, masks, panoptic_on=True, instance_on=True,
                     object_mask_threshold=0.5, thing_classes=set(range(5)), topk=10,
                     chunk_elements=2**20)
result["sem_seg_labels"] = semantic_labels(mask_cls, masks, chunk_elements=2**20)
assert result["panoptic_seg"][0].shape == (800, 640) and len(result["instances"]) > 0
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_memory_grows_with_the_outputs_not_with_queries_times_pixels():
    """60 queries at 800 x 640: their float logits at that size alone would take 123 MB."""
    proc = subprocess.run([sys.executable, "-c", LARGE_IMAGE_CHILD], capture_output=True,
                          text=True, timeout=300, check=True)
    growth = float(proc.stdout.strip().splitlines()[-1])
    queries_times_pixels = 60 * 800 * 640 * 4
    # Resizing all masks at once holds at least that twice (logits and probabilities).
    assert growth < queries_times_pixels, f"peak memory grew by {growth / 2**20:.0f} MiB"
