"""
The YouTube-VIS metric and evaluator: spatio-temporal IoU by its definition, the COCO protocol
(checked against pycocotools' COCOeval on one-frame videos), ground truth fed back as
predictions scores 100, shifted tracks score less, and results.json in the submission format.
"""
import json

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mask2former_video.data_video.datasets.generated_shapes_video import (
    generate_shapes_video_dataset,
    register_generated_shapes_video,
)
from mask2former_video.evaluation import YTVISEvaluator, evaluate_tracks, track_iou
from mask2former_video.evaluation.ytvis_metric import AREA_RANGES


def rle(mask):
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def pixels(*coords, size=4):
    mask = np.zeros((size, size), bool)
    for y, x in coords:
        mask[y, x] = True
    return mask


def test_spatio_temporal_iou_sums_intersections_and_unions_over_frames():
    # frame 0: 2 px vs 2 px sharing 1; frame 1: only the ground truth (3 px); frame 2: only
    # the prediction (4 px). I = 1, U = 3 + 3 + 4 = 10.
    d = {"video_id": 1, "segmentations": [rle(pixels((0, 0), (0, 1))), None,
                                           rle(pixels((3, 0), (3, 1), (3, 2), (3, 3)))]}
    g = {"video_id": 1, "segmentations": [rle(pixels((0, 1), (1, 1))),
                                           rle(pixels((2, 0), (2, 1), (2, 2))), None]}
    empty = {"video_id": 1, "segmentations": [None, None, None]}
    iou = track_iou([d, empty], [g, dict(g, iscrowd=1)])
    np.testing.assert_allclose(iou, [[0.1, 0.1], [0.0, 0.0]])  # crowds: the same IoU
    with pytest.raises(ValueError, match="2 frames"):
        track_iou([dict(d, segmentations=d["segmentations"][:2])], [g])


def test_crowd_tracks_are_ignored_regions():
    person = {"video_id": 1, "category_id": 1,
              "segmentations": [rle(pixels((0, 0), (0, 1))), rle(pixels((1, 1)))]}
    crowd = {"video_id": 2, "category_id": 1, "iscrowd": 1,
             "segmentations": [rle(pixels((2, 2))), None]}
    found = dict(person, score=0.9)
    on_crowd = dict(crowd, score=0.95, iscrowd=0)
    # Missing the crowd costs nothing, and a prediction on it is not a false positive.
    for predictions in ([found], [found, on_crowd]):
        ap = evaluate_tracks([person, crowd], predictions, [1], [1, 2])["AP"]
        assert ap == pytest.approx(100)
    assert evaluate_tracks([person, dict(crowd, iscrowd=0)], [found], [1], [1, 2])["AP"] < 60


def _random_scene(rng, size=400):
    """Ground-truth and predicted masks of one image: perturbed copies, misses, false alarms."""
    gts, dts = [], []
    for _ in range(rng.integers(0, 5)):
        h, w = rng.integers(8, 330, 2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        mask = np.zeros((size, size), bool)
        mask[y:y + h, x:x + w] = True
        category = int(rng.integers(1, 3))
        gts.append((mask, category, 0))
        if rng.random() < 0.8:
            dy, dx = rng.integers(-h // 8, h // 8 + 1), rng.integers(-w // 8, w // 8 + 1)
            dts.append((np.roll(mask, (dy, dx), axis=(0, 1)), category, float(rng.random())))
    for _ in range(rng.integers(0, 3)):
        mask = np.zeros((size, size), bool)
        y, x = rng.integers(0, size - 40, 2)
        mask[y:y + 40, x:x + 60] = True
        dts.append((mask, int(rng.integers(1, 3)), float(rng.random() * 0.8)))
    return gts, dts


def test_one_frame_videos_score_as_cocoeval_scores_their_images(tmp_path):
    """The COCO protocol, without crowds (whose IoU YouTube-VIS and COCO define differently)."""
    rng = np.random.default_rng(0)
    images, coco_gts, coco_dts, gt_tracks, dt_tracks = [], [], [], [], []
    for image_id in range(1, 31):
        gts, dts = _random_scene(rng)
        images.append({"id": image_id, "height": 400, "width": 400})
        for mask, category, crowd in gts:
            coco_gts.append({"id": len(coco_gts) + 1, "image_id": image_id, "iscrowd": crowd,
                             "category_id": category, "segmentation": rle(mask),
                             "area": float(mask.sum()), "bbox": [0, 0, 1, 1]})
            gt_tracks.append({"video_id": image_id, "category_id": category, "iscrowd": crowd,
                              "segmentations": [rle(mask)]})
        for mask, category, score in dts:
            coco_dts.append({"image_id": image_id, "category_id": category, "score": score,
                             "segmentation": rle(mask)})
            dt_tracks.append({"video_id": image_id, "category_id": category, "score": score,
                              "segmentations": [rle(mask)]})
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps({"images": images, "annotations": coco_gts,
                                   "categories": [{"id": 1}, {"id": 2}]}))
    coco = COCO(str(gt_file))
    evaluation = COCOeval(coco, coco.loadRes(coco_dts), "segm")
    evaluation.params.areaRng = [list(r) for r in AREA_RANGES.values()]
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    coco_numbers = [100 * v for v in evaluation.stats]
    ours = evaluate_tracks(gt_tracks, dt_tracks, [1, 2], [image["id"] for image in images])
    # COCOeval's stats: AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl.
    expected = dict(zip(["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"],
                        coco_numbers))
    assert 20 < expected["AP"] < 90  # a mix of hits, misses and false alarms
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


@pytest.fixture(scope="module")
def shapes_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_video")
    generate_shapes_video_dataset(str(root), seed=1, num_train=2, num_val=8, num_frames=8,
                                  size=64)
    register_generated_shapes_video(str(root))
    yield root
    register_generated_shapes_video("datasets/generated/shapes_video")


def _ground_truth_outputs(dataset_name, transform=lambda masks: masks):
    """(inputs, outputs) of the evaluator: every ground-truth track as a prediction."""
    meta = MetadataCatalog.get(dataset_name)
    data = json.loads(open(meta.json_file).read())
    inputs, outputs = [], []
    for video in data["videos"]:
        tracks = [a for a in data["annotations"] if a["video_id"] == video["id"]]
        masks = [torch.from_numpy(np.stack([
            mask_util.decode(s).astype(bool) if s else np.zeros((64, 64), bool)
            for s in track["segmentations"]])) for track in tracks]
        inputs.append({"video_id": video["id"]})
        outputs.append({
            "image_size": (video["height"], video["width"]),
            "pred_scores": [0.9] * len(tracks),
            "pred_labels": [meta.thing_dataset_id_to_contiguous_id[t["category_id"]]
                            for t in tracks],
            "pred_masks": [transform(m) for m in masks],
        })
    return inputs, outputs


def _evaluate(dataset_name, output_dir, transform=lambda masks: masks):
    evaluator = YTVISEvaluator(dataset_name, output_dir=str(output_dir), distributed=False)
    evaluator.reset()
    inputs, outputs = _ground_truth_outputs(dataset_name, transform)
    for video_input, output in zip(inputs, outputs):
        evaluator.process([video_input], [output])
    return evaluator.evaluate()


def test_ground_truth_as_prediction_scores_100_and_writes_the_submission_format(
        shapes_videos, tmp_path):
    results = _evaluate("shapes_video_val", tmp_path)
    assert results["segm"]["AP"] == pytest.approx(100.0)
    assert results["segm"]["AP75"] == pytest.approx(100.0)
    assert results["segm"]["AR10"] == pytest.approx(100.0)
    submission = json.loads((tmp_path / "results.json").read_text())
    data = json.loads(open(MetadataCatalog.get("shapes_video_val").json_file).read())
    assert len(submission) == len(data["annotations"]) > 8
    for entry in submission:
        assert set(entry) == {"video_id", "category_id", "score", "segmentations"}
        assert len(entry["segmentations"]) == 8
        assert all(s is None or set(s) == {"size", "counts"} and isinstance(s["counts"], str)
                   for s in entry["segmentations"])
    # The generated tracks enter, leave or are hidden: some frames have no mask.
    assert any(s is None for entry in submission for s in entry["segmentations"])


def test_shifted_tracks_score_less(shapes_videos, tmp_path):
    in_time = _evaluate("shapes_video_val", tmp_path,
                        lambda m: torch.cat([m[:1], m[:-1]]))  # one frame late
    in_space = _evaluate("shapes_video_val", tmp_path,
                         lambda m: torch.roll(m, shifts=2, dims=2))  # 2 px right
    for results in (in_time, in_space):
        assert 5 < results["segm"]["AP"] < 90
        assert results["segm"]["AP50"] > results["segm"]["AP75"]


def test_split_without_annotations_writes_results_only(shapes_videos, tmp_path):
    meta = MetadataCatalog.get("shapes_video_val")
    data = json.loads(open(meta.json_file).read())
    del data["annotations"]
    json_file = tmp_path / "test.json"
    json_file.write_text(json.dumps(data))
    DatasetCatalog.register("shapes_video_unannotated", lambda: [])
    MetadataCatalog.get("shapes_video_unannotated").set(
        json_file=str(json_file), thing_dataset_id_to_contiguous_id={1: 0, 2: 1, 3: 2})
    try:
        evaluator = YTVISEvaluator("shapes_video_unannotated", output_dir=str(tmp_path / "out"),
                                   distributed=False)
        inputs, outputs = _ground_truth_outputs("shapes_video_val")
        evaluator.process(inputs, outputs)
        assert evaluator.evaluate() == {}
        assert len(json.loads((tmp_path / "out" / "results.json").read_text())) > 0
    finally:
        DatasetCatalog.remove("shapes_video_unannotated")
        MetadataCatalog.remove("shapes_video_unannotated")
