"""Detectron2 evaluator of video instance segmentation: YouTube-VIS AP and results.json."""
import copy
import itertools
import json
import logging
import os
from collections import OrderedDict

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from pycocotools import mask as mask_util
from tabulate import tabulate

from mask2former.data.dataset_mappers.utils import rasterize

from .ytvis_metric import evaluate_tracks

__all__ = ["YTVISEvaluator", "video_predictions_to_results"]

logger = logging.getLogger(__name__)


def _compressed_rle(segmentation, height, width):
    """Any YouTube-VIS segmentation (RLE, uncompressed RLE, polygons) as a compressed RLE."""
    if isinstance(segmentation, dict) and isinstance(segmentation["counts"], (str, bytes)):
        return segmentation
    return mask_util.encode(np.asfortranarray(rasterize(segmentation, height, width)))


def video_predictions_to_results(video_id, prediction, contiguous_to_dataset_id):
    """
    One video's model output as YouTube-VIS results (the challenge submission format): one
    entry per predicted track, {"video_id", "category_id" (dataset id), "score",
    "segmentations": one compressed RLE ("counts" as text) per frame, or None where the mask is
    empty}.
    """
    results = []
    for score, label, masks in zip(prediction["pred_scores"], prediction["pred_labels"],
                                   prediction["pred_masks"]):
        masks = masks.cpu().numpy()  # (T, H, W) bool
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        segmentations = []
        for rle, mask in zip(rles, masks):
            if mask.any():
                rle["counts"] = rle["counts"].decode("ascii")
                segmentations.append(rle)
            else:
                segmentations.append(None)
        results.append({
            "video_id": video_id,
            "category_id": contiguous_to_dataset_id[label],
            "score": float(score),
            "segmentations": segmentations,
        })
    return results


class YTVISEvaluator(DatasetEvaluator):
    """
    Collects the predicted tracks of every video (all workers), writes them to
    ``output_dir/results.json`` in the challenge submission format, and when the dataset's json
    has annotations, evaluates them with the YouTube-VIS metric
    (:mod:`~mask2former_video.evaluation.ytvis_metric`). The official validation and test
    jsons have none: submit ``results.json`` (zipped) to the challenge server to score them.

    Inputs are the video dicts of the test loader ("video_id"), outputs the model's video
    outputs ("pred_scores", "pred_labels", "pred_masks").
    """

    def __init__(self, dataset_name, output_dir=None, distributed=True):
        self._metadata = MetadataCatalog.get(dataset_name)
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        if not hasattr(self._metadata, "json_file"):
            raise ValueError(
                f"YTVISEvaluator: dataset {dataset_name!r} has no 'json_file' in its metadata; "
                "register it with register_ytvis_instances"
            )
        self._contiguous_to_dataset_id = {
            c: d for d, c in self._metadata.thing_dataset_id_to_contiguous_id.items()
        }
        self.reset()

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        for video, prediction in zip(inputs, outputs):
            self._predictions.extend(
                video_predictions_to_results(video["video_id"], prediction,
                                             self._contiguous_to_dataset_id)
            )

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            predictions = self._predictions
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            path = os.path.join(self._output_dir, "results.json")
            with PathManager.open(path, "w") as f:
                json.dump(predictions, f)
            logger.info(f"Wrote {len(predictions)} predicted tracks to {path}")

        with PathManager.open(self._metadata.json_file) as f:
            data = json.load(f)
        if "annotations" not in data:
            logger.warning(
                f"{self._metadata.json_file} has no annotations: no metrics for "
                f"{self._dataset_name}. Submit results.json to the YouTube-VIS server to score it."
            )
            return {}
        ground_truths = self._ground_truths(data)
        metrics = evaluate_tracks(ground_truths, copy.deepcopy(predictions),
                                  [c["id"] for c in data["categories"]],
                                  [v["id"] for v in data["videos"]])
        logger.info(
            f"YouTube-VIS evaluation of {len(predictions)} predicted tracks on "
            f"{self._dataset_name} ({len(data['videos'])} videos):\n"
            + tabulate([list(metrics.values())], headers=list(metrics), floatfmt=".3f",
                       tablefmt="pipe")
        )
        return OrderedDict(segm=metrics)

    @staticmethod
    def _ground_truths(data):
        """The json's tracks with compressed RLEs (None where a frame has no mask)."""
        sizes = {v["id"]: (v["height"], v["width"]) for v in data["videos"]}
        tracks = []
        for track in data["annotations"]:
            height, width = sizes[track["video_id"]]
            tracks.append({
                "video_id": track["video_id"],
                "category_id": track["category_id"],
                "iscrowd": track.get("iscrowd", 0),
                "segmentations": [_compressed_rle(s, height, width) if s else None
                                  for s in track["segmentations"]],
            })
        return tracks
