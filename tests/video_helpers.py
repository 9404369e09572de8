"""
Shared pieces of the video tests: a tiny video Mask2Former config, and a writer of datasets in
the official YouTube-VIS layout (frames as JPEGs, one json per split, uncompressed RLE or
polygon annotations as in the official files).
"""
import json
import os

import cv2
import numpy as np
from PIL import Image

from mask2former_video import add_maskformer2_video_config
from small_model import small_config


def small_video_config(num_classes=3, num_queries=8, dec_layers=4, num_frames=2,
                       test_dataset="small_video_model_test"):
    """A random-weight video Mask2Former (ResNet-18, width 64) that runs in well under a second."""
    cfg = small_config(num_classes=num_classes, num_queries=num_queries, dec_layers=dec_layers,
                       test_dataset=test_dataset)
    add_maskformer2_video_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "VideoMaskFormer"
    cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = "VideoMultiScaleMaskedTransformerDecoder"
    cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON = False
    cfg.MODEL.MASK_FORMER.TEST.INSTANCE_ON = True
    cfg.INPUT.SAMPLING_FRAME_NUM = num_frames
    return cfg


def uncompressed_rle(mask):
    """(H, W) bool mask -> {"counts": [run lengths, column-major, from 0s], "size": [H, W]}."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [len(flat)]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": list(mask.shape)}


def polygons(mask):
    """(H, W) bool mask -> COCO polygons (list of flat [x0, y0, x1, y1, ...] lists)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    return [c.flatten().astype(float).tolist() for c in contours if len(c) >= 3]


def box_mask(height, width, x0, y0, x1, y1):
    mask = np.zeros((height, width), bool)
    mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return mask


def write_ytvis_split(root, year, folder, videos, categories, with_annotations=True):
    """
    Write ``root/ytvis_<year>/<folder>/JPEGImages/<video>/<frame>.jpg`` and
    ``root/ytvis_<year>/<folder>.json``.

    Args:
        videos: list of {"name", "frames": list of (H, W, 3) uint8 RGB, "tracks": list of
            {"id", "category_id", "masks": list of (H, W) bool or None, optional "polygons":
            True (write polygons instead of RLE), optional "iscrowd"}}.
        categories: list of {"id", "name"}.
    """
    base = os.path.join(root, f"ytvis_{year}")
    data = {"videos": [], "categories": [{"id": c["id"], "name": c["name"]} for c in categories]}
    annotations = []
    for video_id, video in enumerate(videos, start=1):
        folder_path = os.path.join(base, folder, "JPEGImages", video["name"])
        os.makedirs(folder_path, exist_ok=True)
        names = []
        for t, frame in enumerate(video["frames"]):
            names.append(f"{video['name']}/{t * 5:05d}.jpg")
            Image.fromarray(frame).save(os.path.join(base, folder, "JPEGImages", names[-1]),
                                        quality=95)
        height, width = video["frames"][0].shape[:2]
        data["videos"].append({"id": video_id, "file_names": names, "height": height,
                               "width": width, "length": len(names)})
        for track in video.get("tracks", []):
            encode = polygons if track.get("polygons") else uncompressed_rle
            annotations.append({
                "id": track["id"], "video_id": video_id, "category_id": track["category_id"],
                "iscrowd": track.get("iscrowd", 0), "height": height, "width": width,
                "length": len(names),
                "segmentations": [encode(m) if m is not None else None for m in track["masks"]],
                "areas": [int(m.sum()) if m is not None else None for m in track["masks"]],
            })
    if with_annotations:
        data["annotations"] = annotations
    with open(os.path.join(base, f"{folder}.json"), "w") as f:
        json.dump(data, f)
