"""
Loading and registering datasets in the YouTube-VIS format: a folder of frames per video and a
json file with

* "videos": {"id", "file_names" (frame paths relative to the image root), "height", "width",
  "length"} per video;
* "annotations" (absent for the test splits): one entry per track, {"id", "video_id",
  "category_id", "iscrowd", "segmentations": one RLE / polygons or null per frame, "areas",
  "bboxes"};
* "categories": {"id", "name"}.
"""
import json
import logging
import os

from detectron2.structures import BoxMode

from mask2former.data.datasets.catalog import check_exists, register_dataset

logger = logging.getLogger(__name__)

__all__ = ["load_ytvis_json", "register_ytvis_instances", "ytvis_metadata"]


def ytvis_metadata(categories):
    """Metadata of a dataset with the thing ``categories`` ({"id", "name", "color"})."""
    return {
        "thing_classes": [c["name"] for c in categories],
        "thing_colors": [c["color"] for c in categories],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories)},
    }


def _check_categories(json_file, listed, expected_ids_to_names, dataset_name):
    names = {c["id"]: c["name"] for c in listed}
    if names != expected_ids_to_names:
        wrong = sorted(set(names.items()) ^ set(expected_ids_to_names.items()))[:6]
        raise ValueError(
            f"{json_file}: its categories differ from those registered for {dataset_name!r} "
            f"(e.g. {wrong}): is this the json of another dataset (YouTube-VIS 2019 and 2021 "
            "have different category lists)? Use the json of the registered dataset, or "
            "register this one with its own categories (register_ytvis_instances)."
        )


def load_ytvis_json(json_file, image_root, dataset_name, dataset_id_to_contiguous_id,
                    class_names, prepare="see datasets/README.md"):
    """
    Load a YouTube-VIS json into Detectron2-style dataset dicts, one per video.

    Args:
        json_file (str): the json file.
        image_root (str): the folder the videos' "file_names" are relative to.
        dataset_name (str): the registered name (for messages).
        dataset_id_to_contiguous_id (dict): dataset category id -> contiguous class id.
        class_names (list[str]): name of each contiguous class; the json's categories must
            be these.
        prepare (str): how to get missing files (for messages).

    Returns:
        list[dict]: per video "file_names" (T absolute paths), "height", "width", "length",
        "video_id" and, when the json has annotations, "annotations": T lists (one per frame)
        of the tracks in that frame: {"id" (track id), "category_id" (contiguous),
        "segmentation", "bbox", "bbox_mode", "iscrowd"}.
    """
    check_exists(json_file, prepare)
    check_exists(image_root, prepare)
    with open(json_file) as f:
        data = json.load(f)
    expected = {d: class_names[c] for d, c in dataset_id_to_contiguous_id.items()}
    _check_categories(json_file, data.get("categories", []), expected, dataset_name)

    tracks_of = {}
    for track in data.get("annotations", []):
        tracks_of.setdefault(track["video_id"], []).append(track)
    has_annotations = "annotations" in data

    dicts = []
    for video in data["videos"]:
        length = len(video["file_names"])
        record = {
            "file_names": [os.path.join(image_root, name) for name in video["file_names"]],
            "height": video["height"],
            "width": video["width"],
            "length": length,
            "video_id": video["id"],
        }
        if has_annotations:
            frames = [[] for _ in range(length)]
            for track in tracks_of.get(video["id"], []):
                if len(track["segmentations"]) != length:
                    raise ValueError(
                        f"{json_file}: track {track['id']} of video {video['id']} has "
                        f"{len(track['segmentations'])} segmentations for {length} frames"
                    )
                bboxes = track.get("bboxes") or [None] * length
                for t, (segmentation, bbox) in enumerate(zip(track["segmentations"], bboxes)):
                    if segmentation is None:
                        continue
                    frames[t].append({
                        "id": track["id"],
                        "category_id": dataset_id_to_contiguous_id[track["category_id"]],
                        "segmentation": segmentation,
                        "bbox": bbox,
                        "bbox_mode": BoxMode.XYWH_ABS,
                        "iscrowd": track.get("iscrowd", 0),
                    })
            record["annotations"] = frames
        dicts.append(record)
    if not dicts:
        raise FileNotFoundError(f"{json_file} lists no videos. {prepare}.")
    check_exists(dicts[0]["file_names"][0], prepare)
    logger.info(f"Loaded {len(dicts)} videos of {dataset_name} from {json_file}")
    return dicts


def register_ytvis_instances(name, categories, json_file, image_root, prepare):
    """
    Register the YouTube-VIS-format dataset ``name`` (replacing an earlier registration of the
    name) with the thing ``categories`` ({"id", "name", "color"}) and the metadata
    "json_file", "image_root" and evaluator_type "ytvis".
    """
    meta = ytvis_metadata(categories)
    register_dataset(
        name,
        lambda: load_ytvis_json(json_file, image_root, name,
                                meta["thing_dataset_id_to_contiguous_id"],
                                meta["thing_classes"], prepare),
        json_file=json_file,
        image_root=image_root,
        evaluator_type="ytvis",
        **meta,
    )
