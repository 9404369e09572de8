"""
Comparisons of the exported models' results (numpy, mask2former.deploy) with the PyTorch model's
(MaskFormer's output dict), shared by tests/test_deploy_runner.py and tests/test_export.py.
"""
import numpy as np
import pytest

# Largest relative difference allowed between scores computed from the two implementations'
# logits (equal to about 1e-5; the same formulas in float32, summed in other orders).
SCORE_TOLERANCE = 1e-4


def assert_same_semantic(expected, actual):
    """expected: (K, H, W) tensor; actual: (K, H, W) array. Equal scores and equal maps."""
    expected = expected.numpy()
    np.testing.assert_allclose(actual, expected, rtol=SCORE_TOLERANCE, atol=1e-6)
    assert np.array_equal(actual.argmax(0), expected.argmax(0))


def assert_same_labels(expected, actual):
    """expected: (H, W) int64 tensor; actual: (H, W) array. The same label map."""
    assert actual.dtype == np.int64 and actual.shape == tuple(expected.shape)
    assert np.array_equal(actual, expected.numpy())


def assert_same_panoptic(expected, actual):
    """(panoptic_seg, segments_info) of the model and of the runner: identical segments."""
    expected_seg, expected_info = expected
    actual_seg, actual_info = actual
    assert np.array_equal(actual_seg, expected_seg.numpy())
    assert len(actual_info) == len(expected_info)
    for a, e in zip(actual_info, expected_info):
        assert {k: v for k, v in a.items() if k != "score"} == {
            k: v for k, v in e.items() if k != "score"
        }
        assert a.get("score", 0.0) == pytest.approx(e.get("score", 0.0), rel=SCORE_TOLERANCE)


def _sorted_instances(classes, masks, boxes, scores):
    """[(class, mask bytes, box, score)] in an order that does not depend on the instances'."""
    rows = [(int(c), np.packbits(m).tobytes(), tuple(b.tolist()), float(s))
            for c, m, b, s in zip(classes, masks, boxes, scores)]
    return sorted(rows, key=lambda row: row[:3])


def assert_same_instances(expected, actual):
    """Instances of the model and the runner's dict: the same (class, mask, box, score)s."""
    expected = _sorted_instances(expected.pred_classes.numpy(), expected.pred_masks.numpy(),
                                 expected.pred_boxes.tensor.numpy(), expected.scores.numpy())
    actual = _sorted_instances(actual["pred_classes"], actual["pred_masks"],
                               actual["pred_boxes"], actual["scores"])
    assert [row[:3] for row in actual] == [row[:3] for row in expected]
    for (*_, actual_score), (*_, expected_score) in zip(actual, expected):
        assert actual_score == pytest.approx(expected_score, rel=SCORE_TOLERANCE, abs=1e-6)


def assert_same_results(expected, actual):
    """A MaskFormer output dict and the runner's results for the same image: the same results."""
    assert set(expected) == set(actual)
    if "sem_seg" in expected:
        assert_same_semantic(expected["sem_seg"], actual["sem_seg"])
    if "sem_seg_labels" in expected:
        assert_same_labels(expected["sem_seg_labels"], actual["sem_seg_labels"])
    if "panoptic_seg" in expected:
        assert_same_panoptic(expected["panoptic_seg"], actual["panoptic_seg"])
    if "instances" in expected:
        assert_same_instances(expected["instances"], actual["instances"])


def as_numpy(results):
    """MaskFormer's output dict in the runner's numpy form."""
    out = {key: results[key].numpy() for key in ("sem_seg", "sem_seg_labels") if key in results}
    if "panoptic_seg" in results:
        out["panoptic_seg"] = (results["panoptic_seg"][0].numpy(), results["panoptic_seg"][1])
    if "instances" in results:
        found = results["instances"]
        out["instances"] = {
            "pred_masks": found.pred_masks.numpy(), "pred_boxes": found.pred_boxes.tensor.numpy(),
            "scores": found.scores.numpy(), "pred_classes": found.pred_classes.numpy(),
        }
    return out
