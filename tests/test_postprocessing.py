"""Semantic, panoptic and instance post-processing of one image's (class, mask) predictions."""
import pytest
import torch

from mask2former.modeling.postprocessing import (
    instance_inference,
    panoptic_inference,
    semantic_inference,
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
