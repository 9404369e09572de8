"""
Write one image's predictions to files, in the formats Detectron2's evaluators write and read:

* panoptic: ``<stem>_panoptic.png``, segment ids in panopticapi's RGB encoding (0: no segment),
  and ``<stem>_panoptic.json``, the image's entry of COCO panoptic ``predictions.json``
  (``COCOPanopticEvaluator``): {"image_id", "file_name", "segments_info": [{"id",
  "category_id" (dataset id), "isthing", "area", "score" (things)}]};
* instance: ``<stem>_instances.json``, COCO results as in ``coco_instances_results.json``
  (``COCOEvaluator``): [{"image_id", "category_id" (dataset id), "bbox" (XYWH), "score",
  "segmentation" (RLE)}], instances under the confidence threshold left out;
* semantic: ``<stem>_sem_seg.png``, the class of each pixel as contiguous ids (uint8, uint16
  for more than 255 classes), the layout of the semantic ground truth that the semantic
  evaluators read.

``demo/demo.py --save-predictions`` and the web app (``demo/app.py``) write them.
"""
import json
import os

import numpy as np
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from panopticapi.utils import id2rgb
from PIL import Image

__all__ = ["prediction_files", "write_prediction_files"]


def _dataset_id(metadata, contiguous_id, isthing):
    """The dataset's category id of a contiguous class id (things first: their map)."""
    maps = ["thing_dataset_id_to_contiguous_id", "stuff_dataset_id_to_contiguous_id"]
    for key in maps if isthing else maps[::-1]:
        reverse = {v: k for k, v in metadata.get(key, {}).items()}
        if contiguous_id in reverse:
            return int(reverse[contiguous_id])
    return int(contiguous_id)


def panoptic_entry(panoptic_seg, segments_info, metadata, image_id, png_name):
    """
    Args:
        panoptic_seg: (H, W) int segment ids (0: no segment), a tensor or an array.
        segments_info: the model's segment list ("id", contiguous "category_id", "isthing",
            "score" for things).
        metadata: the model's dataset metadata (for the dataset ids).

    Returns:
        (H, W, 3) uint8 RGB PNG content, and the JSON entry of the image.
    """
    ids = np.asarray(panoptic_seg.cpu() if hasattr(panoptic_seg, "cpu") else panoptic_seg)
    areas = dict(zip(*np.unique(ids, return_counts=True)))
    segments = []
    for info in segments_info:
        segment = {
            "id": int(info["id"]),
            "category_id": _dataset_id(metadata, int(info["category_id"]), info["isthing"]),
            "isthing": bool(info["isthing"]),
            "area": int(areas.get(info["id"], 0)),
        }
        if "score" in info:
            segment["score"] = float(info["score"])
        segments.append(segment)
    entry = {"image_id": image_id, "file_name": png_name, "segments_info": segments}
    return id2rgb(ids.astype(np.int64)).astype(np.uint8), entry


def instances_entries(instances, metadata, image_id, confidence_threshold):
    """COCO instance results (dataset category ids) of the instances above the threshold."""
    instances = instances.to("cpu")
    instances = instances[instances.scores >= confidence_threshold]
    results = instances_to_coco_json(instances, image_id)
    for result in results:
        result["category_id"] = _dataset_id(metadata, result["category_id"], True)
    return results


def semantic_label_map(predictions, num_classes):
    """(H, W) uint8 (uint16 beyond 255 classes) class of each pixel from a model output dict."""
    if "sem_seg_labels" in predictions:
        labels = predictions["sem_seg_labels"]
    else:
        labels = predictions["sem_seg"].argmax(dim=0)
    return labels.cpu().numpy().astype(np.uint16 if num_classes > 255 else np.uint8)


def prediction_files(predictions, task, metadata, stem, confidence_threshold):
    """
    The files of one task's predictions, without writing them.

    Args:
        predictions: the model's output dict for one image.
        task: "panoptic", "instance" or "semantic".
        metadata: the model's dataset metadata.
        stem: the image's name without extension (also the JSON "image_id").
        confidence_threshold: instances under this score are left out.

    Returns:
        dict: file name -> (H, W[, 3]) array (a PNG) or a JSON-serializable object.
    """
    if task == "panoptic":
        png_name = f"{stem}_panoptic.png"
        png, entry = panoptic_entry(*predictions["panoptic_seg"], metadata, stem, png_name)
        return {png_name: png, f"{stem}_panoptic.json": entry}
    if task == "instance":
        entries = instances_entries(
            predictions["instances"], metadata, stem, confidence_threshold
        )
        return {f"{stem}_instances.json": entries}
    if task == "semantic":
        num_classes = len(metadata.stuff_classes)
        return {f"{stem}_sem_seg.png": semantic_label_map(predictions, num_classes)}
    raise ValueError(f"task must be panoptic, instance or semantic, got {task!r}")


def write_prediction_files(folder, predictions, task, metadata, stem, confidence_threshold):
    """Write :func:`prediction_files` into ``folder``; returns the paths written."""
    paths = []
    for name, content in prediction_files(
        predictions, task, metadata, stem, confidence_threshold
    ).items():
        path = os.path.join(folder, name)
        if isinstance(content, np.ndarray):
            Image.fromarray(content).save(path)
        else:
            with open(path, "w") as f:
                json.dump(content, f)
        paths.append(path)
    return paths
