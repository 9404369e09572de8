"""
A generated video instance segmentation dataset in the YouTube-VIS layout, so that video
Mask2Former can be trained and evaluated end to end in minutes on a CPU, with no download.

Each video shows the scenes of :mod:`mask2former.data.datasets.generated_shapes` in motion: a
fixed background (sky, ground, water) and 1 to 4 shapes (circle, square, triangle) that move in
straight lines and turn; shapes enter the frame from outside, leave it, and pass in front of
each other (each has its own depth), so tracks start late, end early, are partly or wholly
occluded for some frames, and reappear.

Layout under ``root`` (that of YouTube-VIS)::

    {train,valid}/JPEGImages/<video>/<frame>.jpg
    {train,valid}.json       videos, one annotation per track (an RLE or null per frame)
    meta.json                generator version, seed and sizes

The same seed gives byte-identical files.
"""
import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from mask2former.data.datasets.generated_shapes import (
    SHAPES_CATEGORIES,
    _compose,
    _render_background,
    _sample_shape,
    _shape_mask,
    _visible_masks,
    write_generated_dataset,
)

from .ytvis import register_ytvis_instances

# Bump when the rendered videos or the file formats change: existing data is then regenerated.
GENERATOR_VERSION = 1
SHAPES_VIDEO_CATEGORIES = [
    {"id": c["id"], "name": c["name"], "color": c["color"]} for c in SHAPES_CATEGORIES
    if c["isthing"]
]
_CATEGORY_ID = {c["name"]: c["id"] for c in SHAPES_VIDEO_CATEGORIES}
SPLITS = {"train": "train", "val": "valid"}
# A track is annotated in a frame when at least this many of its pixels are visible.
MIN_VISIBLE_PIXELS = 12


def _sample_track(rng, size, num_frames):
    """
    A shape with a straight path: it stays in view, enters through a border (out of view until
    frame ``enter``, then coming in), or leaves through a border (out of view from frame
    ``leave``); it also turns, and has a depth (front to back order).
    """
    shape = _sample_shape(rng, size, size)
    shape["radius"] = float(rng.uniform(0.08, 0.18) * size)
    speed = float(rng.uniform(1.0, 4.0) * size / 128)
    side = rng.uniform(0, 2 * np.pi)
    outward = np.array([np.cos(side), np.sin(side)], np.float32)
    middle = np.full(2, size / 2, np.float32)
    # Distance from the middle to the border along ``outward``, plus the radius: out of view.
    out_of_view = size / 2 / max(abs(outward[0]), abs(outward[1])) + 1.2 * shape["radius"]
    mode = rng.choice(["stay", "enter", "leave"], p=[0.4, 0.3, 0.3])
    if mode == "enter":
        enter = rng.uniform(0.0, 0.5) * num_frames
        shape["center"] = middle + outward * (out_of_view + speed * enter)
        velocity = -outward * speed
    elif mode == "leave":
        leave = rng.uniform(0.4, 0.9) * num_frames
        shape["center"] = middle + outward * (out_of_view - speed * leave)
        velocity = outward * speed
    else:
        angle = rng.uniform(0, 2 * np.pi)
        velocity = 0.5 * speed * np.array([np.cos(angle), np.sin(angle)])
    return {
        "shape": shape,
        "velocity": velocity.astype(np.float32),
        "turn": float(rng.uniform(-6, 6)),
        "depth": float(rng.random()),
    }


def render_shapes_video(rng, size, num_frames):
    """
    Render one video.

    Returns:
        frames: list of T (H, W, 3) uint8 RGB frames.
        tracks: list of {"category_id" (dataset id), "masks": list of T (H, W) bool visible
        masks or None where fewer than MIN_VISIBLE_PIXELS pixels are visible}; only tracks
        visible in at least one frame.
    """
    background, stuff = _render_background(rng, size, size)
    tracks = [_sample_track(rng, size, num_frames) for _ in range(int(rng.integers(1, 5)))]
    tracks.sort(key=lambda track: track["depth"])  # drawn back to front
    frames, visible = [], []
    for _ in range(num_frames):
        placed = [(track["shape"], _shape_mask(track["shape"], size, size)) for track in tracks]
        frames.append(_compose(background, stuff, placed, rng)[0])
        visible.append(_visible_masks([mask for _, mask in placed]))
        for track in tracks:
            track["shape"]["center"] = track["shape"]["center"] + track["velocity"]
            track["shape"]["angle"] += track["turn"]
    results = []
    for index, track in enumerate(tracks):
        masks = [frame[index] if frame[index].sum() >= MIN_VISIBLE_PIXELS else None
                 for frame in visible]
        if any(m is not None for m in masks):
            results.append({"category_id": _CATEGORY_ID[track["shape"]["kind"]], "masks": masks})
    return frames, results


def _encode(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _write_split(root, split, num_videos, num_frames, size, seed):
    folder = SPLITS[split]
    videos, annotations = [], []
    for index in range(num_videos):
        rng = np.random.default_rng([seed, list(SPLITS).index(split), index])
        frames, tracks = render_shapes_video(rng, size, num_frames)
        name = f"{index:05d}"
        os.makedirs(os.path.join(root, folder, "JPEGImages", name))
        file_names = [f"{name}/{t:05d}.jpg" for t in range(num_frames)]
        for frame, file_name in zip(frames, file_names):
            Image.fromarray(frame).save(
                os.path.join(root, folder, "JPEGImages", file_name), quality=92
            )
        video_id = index + 1
        videos.append({"id": video_id, "file_names": file_names, "height": size,
                       "width": size, "length": num_frames})
        for track in tracks:
            rles = [_encode(m) if m is not None else None for m in track["masks"]]
            annotations.append({
                "id": len(annotations) + 1,
                "video_id": video_id,
                "category_id": track["category_id"],
                "iscrowd": 0,
                "height": size,
                "width": size,
                "length": num_frames,
                "segmentations": rles,
                "areas": [int(m.sum()) if m is not None else None for m in track["masks"]],
                "bboxes": [mask_util.toBbox(r).tolist() if r else None for r in rles],
            })
    data = {
        "videos": videos,
        "annotations": annotations,
        "categories": [{"id": c["id"], "name": c["name"], "supercategory": "shape"}
                       for c in SHAPES_VIDEO_CATEGORIES],
    }
    with open(os.path.join(root, f"{folder}.json"), "w") as f:
        json.dump(data, f, sort_keys=True, separators=(",", ":"))


def generate_shapes_video_dataset(root, seed=0, num_train=300, num_val=30, num_frames=16,
                                  size=128):
    """
    Write the dataset under ``root`` unless the same version, seed and sizes are already there
    (see :func:`~mask2former.data.datasets.generated_shapes.write_generated_dataset`).

    Returns:
        bool: True if the files were (re)generated, False if the existing ones were kept.
    """
    meta = {
        "generator": "mask2former_video.data_video.datasets.generated_shapes_video",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "num_videos": {"train": num_train, "val": num_val},
        "num_frames": num_frames,
        "size": size,
    }

    def write(folder):
        for split, num in (("train", num_train), ("val", num_val)):
            _write_split(folder, split, num, num_frames, size, seed)

    return write_generated_dataset(root, meta, write)


def register_generated_shapes_video(root):
    """
    Register ``shapes_video_train`` and ``shapes_video_val``: the generated videos under
    ``root``, evaluated with the YouTube-VIS metric.
    """
    for split, folder in SPLITS.items():
        register_ytvis_instances(
            f"shapes_video_{split}",
            SHAPES_VIDEO_CATEGORIES,
            json_file=os.path.join(root, f"{folder}.json"),
            image_root=os.path.join(root, folder, "JPEGImages"),
            prepare="Generate it with: python tools/main_job_video.py (or "
                    "generate_shapes_video_dataset(root))",
        )


def default_shapes_video_root():
    """``$DETECTRON2_DATASETS/generated/shapes_video`` (``datasets/generated/...`` by default)."""
    return os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "generated", "shapes_video")
