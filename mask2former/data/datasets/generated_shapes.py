"""
A generated dataset of simple scenes, written to disk in the COCO panoptic, COCO instance and
semantic-label formats, so that the whole Mask2Former pipeline can be trained and evaluated on it
in minutes on a CPU, with no download.

Scenes: "stuff" regions (sky, ground, water) separated by irregular borders, each with its own
texture (smooth gradient with clouds, speckled soil, horizontal waves) and varied colors; on top,
"thing" shapes (circle, square, triangle) of random color, size and rotation that may overlap
and touch. Colors of the classes overlap, so shape and texture, not color, tell them apart.

Layout under ``root`` (the COCO panoptic layout)::

    shapes_{split}/*.jpg                            images
    annotations/panoptic_shapes_{split}.json        COCO panoptic annotations
    annotations/panoptic_shapes_{split}/*.png       panoptic PNGs (RGB id encoding of panopticapi)
    annotations/instances_shapes_{split}.json       COCO instance annotations (RLE, iscrowd 0)
    panoptic_semseg_shapes_{split}/*.png            semantic labels (contiguous ids, 255 = ignore)
    meta.json                                       generator version, seed and sizes

The same seed gives byte-identical files.
"""
import json
import logging
import os
import shutil

import cv2
import numpy as np
from detectron2.data.datasets import load_coco_json
from PIL import Image
from panopticapi.utils import id2rgb
from pycocotools import mask as mask_util

from .catalog import (
    load_panoptic_json,
    load_sem_seg_checked,
    panoptic_meta,
    register_dataset,
)

logger = logging.getLogger(__name__)

# Bump when the rendered scenes or the file formats change: existing data is then regenerated.
GENERATOR_VERSION = 1

_SHAPE, _BACKGROUND = "shape", "background"  # supercategories
SHAPES_CATEGORIES = [
    {"id": 1, "name": "circle", "isthing": 1, "color": [220, 20, 60], "supercategory": _SHAPE},
    {"id": 2, "name": "square", "isthing": 1, "color": [0, 130, 255], "supercategory": _SHAPE},
    {"id": 3, "name": "triangle", "isthing": 1, "color": [250, 170, 30], "supercategory": _SHAPE},
    {"id": 4, "name": "sky", "isthing": 0, "color": [135, 206, 235], "supercategory": _BACKGROUND},
    {"id": 5, "name": "ground", "isthing": 0, "color": [139, 90, 43], "supercategory": _BACKGROUND},
    {"id": 6, "name": "water", "isthing": 0, "color": [0, 80, 160], "supercategory": _BACKGROUND},
]
_CATEGORY_ID = {c["name"]: c["id"] for c in SHAPES_CATEGORIES}
_THING_NAMES = [c["name"] for c in SHAPES_CATEGORIES if c["isthing"]]
# Panoptic segment id = category id * _ID_STRIDE + index of the segment in the image.
_ID_STRIDE = 1000
SPLITS = ("train", "val")


# ---------------------------------------------------------------------------------------------
# Scene rendering
# ---------------------------------------------------------------------------------------------
def _smooth_noise(rng, h, w, cell):
    """Low-frequency noise in [0, 1] of shape (H, W): a random (H/cell, W/cell) grid upsampled."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def _border(rng, w, base_y, amplitude):
    """An irregular border: y coordinate for each column, (W,), a sum of random sinusoids."""
    x = np.arange(w, dtype=np.float32)
    y = np.full(w, base_y, dtype=np.float32)
    for _ in range(3):
        freq = rng.uniform(0.5, 4.0) * 2 * np.pi / w
        y += amplitude * rng.uniform(0.2, 1.0) * np.sin(freq * x + rng.uniform(0, 2 * np.pi))
    return y


def _random_color(rng, low=0, high=255):
    return rng.uniform(low, high, size=3).astype(np.float32)


def _sky_texture(rng, h, w):
    """Vertical gradient between two colors with soft clouds. Returns (H, W, 3) float RGB."""
    palette = np.array(
        [[90, 150, 230], [150, 200, 250], [170, 170, 180], [240, 150, 100], [60, 60, 120]],
        np.float32,
    )
    top, bottom = palette[rng.integers(len(palette), size=2)]
    top = top + rng.normal(0, 15, 3)
    bottom = bottom + rng.normal(0, 15, 3)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    sky = top * (1 - t) + bottom * t
    clouds = np.clip(_smooth_noise(rng, h, w, 24) * 2.0 - 1.2, 0.0, 1.0)[..., None]
    return sky * (1 - clouds) + 235.0 * clouds


def _ground_texture(rng, h, w):
    """Speckled, blotchy soil or grass of random color. Returns (H, W, 3) float RGB."""
    palette = np.array(
        [[120, 85, 50], [80, 130, 50], [190, 160, 110], [100, 100, 90], [60, 90, 140]], np.float32
    )
    base = palette[rng.integers(len(palette))] + rng.normal(0, 20, 3)
    blotches = (_smooth_noise(rng, h, w, 12)[..., None] - 0.5) * 60.0
    speckle = rng.normal(0, 28, (h, w, 1)).astype(np.float32)
    return base + blotches + speckle


def _water_texture(rng, h, w):
    """Horizontal waves of random color and frequency. Returns (H, W, 3) float RGB."""
    palette = np.array(
        [[30, 90, 170], [40, 140, 150], [20, 50, 90], [120, 150, 170], [60, 120, 80]], np.float32
    )
    base = palette[rng.integers(len(palette))] + rng.normal(0, 15, 3)
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    wobble = 3.0 * np.sin(x * rng.uniform(0.05, 0.15) + rng.uniform(0, 2 * np.pi))
    waves = np.sin((y + wobble) * rng.uniform(0.6, 1.2) + rng.uniform(0, 2 * np.pi))
    return base + (waves[..., None] * 28.0).astype(np.float32)


_STUFF_TEXTURES = {"sky": _sky_texture, "ground": _ground_texture, "water": _water_texture}


def _render_background(rng, h, w):
    """
    Stuff layout: sky above an irregular horizon (sometimes absent), then one or two bands of
    ground / water separated by a second irregular border.

    Returns:
        image: (H, W, 3) float RGB.
        stuff: (H, W) int32 dataset category id of each pixel.
    """
    rows = np.arange(h, dtype=np.float32)[:, None]
    horizon = _border(rng, w, rng.uniform(-0.1, 0.6) * h, rng.uniform(2, 0.12 * h))
    lower = _border(rng, w, rng.uniform(0.45, 1.1) * h, rng.uniform(2, 0.12 * h))
    near, far = rng.choice(["ground", "water"], size=2)
    names = np.where(rows < horizon[None, :], 0, np.where(rows < lower[None, :], 1, 2))
    band_names = ["sky", str(near), str(far)]
    stuff = np.zeros((h, w), np.int32)
    image = np.zeros((h, w, 3), np.float32)
    for band, name in enumerate(band_names):
        region = names == band
        if not region.any():
            continue
        texture = _STUFF_TEXTURES[name](rng, h, w)
        image[region] = texture[region]
        stuff[region] = _CATEGORY_ID[name]
    return image, stuff


def _sample_shape(rng, h, w):
    """A random thing: kind, center (x, y), radius, rotation angle (degrees), fill parameters."""
    size = min(h, w)
    return {
        "kind": _THING_NAMES[rng.integers(len(_THING_NAMES))],
        "center": rng.uniform([0.08 * w, 0.08 * h], [0.92 * w, 0.92 * h]).astype(np.float32),
        "radius": float(rng.uniform(0.07, 0.2) * size),
        "angle": float(rng.uniform(0, 360)),
        "color": _random_color(rng, 10, 250),
        "shade": float(rng.uniform(-50, 50)),
        "noise_seed": int(rng.integers(2**31)),
    }


def _shape_polygon(shape):
    """Vertices (N, 2) of a square or triangle shape, in pixels (x, y)."""
    corners = 4 if shape["kind"] == "square" else 3
    angles = np.deg2rad(shape["angle"]) + 2 * np.pi * np.arange(corners) / corners
    return shape["center"] + shape["radius"] * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _shape_mask(shape, h, w):
    """Binary mask (H, W) bool of one shape."""
    canvas = np.zeros((h, w), np.uint8)
    if shape["kind"] == "circle":
        center = tuple(int(round(v)) for v in shape["center"])
        cv2.circle(canvas, center, int(round(shape["radius"])), 1, thickness=-1)
    else:
        pts = np.round(_shape_polygon(shape) * 16).astype(np.int32)
        cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _paint_shape(image, mask, shape):
    """Fill ``mask`` of ``image`` (H, W, 3) float with the shape's color, a shade and noise."""
    ys, xs = np.nonzero(mask)
    direction = np.array([np.cos(np.deg2rad(shape["angle"])), np.sin(np.deg2rad(shape["angle"]))])
    offset = ((xs - shape["center"][0]) * direction[0] + (ys - shape["center"][1]) * direction[1])
    shade = shape["shade"] * offset / max(shape["radius"], 1.0)
    noise = np.random.default_rng(shape["noise_seed"]).normal(0, 8, (len(ys), 1))
    image[ys, xs] = shape["color"][None, :] + shade[:, None] + noise


def _place_shapes(rng, h, w, num_shapes):
    """
    Sample up to ``num_shapes`` shapes, drawn in order (later ones on top). A shape covering
    less than 0.8% of the image (e.g. mostly outside it), or hiding more than half of an earlier
    shape, is sampled again (up to 10 times, then left out).

    Returns:
        list of (shape dict, full mask (H, W) bool).
    """
    placed = []
    for _ in range(num_shapes):
        for _attempt in range(10):
            shape = _sample_shape(rng, h, w)
            mask = _shape_mask(shape, h, w)
            if mask.sum() < 0.008 * h * w:
                continue
            masks = [m for _, m in placed]
            visible = _visible_masks(masks + [mask])[:-1]
            if all(v.sum() >= 0.5 * m.sum() for v, m in zip(visible, masks)):
                placed.append((shape, mask))
                break
    return placed


def _visible_masks(masks):
    """Visible part of each mask given that later masks are drawn on top: list of (H, W) bool."""
    visible = []
    covered = np.zeros_like(masks[0]) if masks else None
    for mask in reversed(masks):
        visible.append(mask & ~covered)
        covered = covered | mask
    return visible[::-1]


def _compose(background, stuff, shapes, rng):
    """
    Paint ``shapes`` (list of (shape, mask)) over the background and build the panoptic labels.

    Returns:
        image: (H, W, 3) uint8 RGB.
        pan: (H, W) int32 panoptic segment id of each pixel.
        segments: list of {"id", "category_id", "isthing"} in segment order.
    """
    h, w = stuff.shape
    image = background.copy()
    for shape, mask in shapes:
        _paint_shape(image, mask, shape)
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    image = cv2.GaussianBlur(image, (3, 3), 0.6)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    pan = np.zeros((h, w), np.int32)
    segments = []
    for cat in SHAPES_CATEGORIES:
        if cat["isthing"]:
            continue
        region = stuff == cat["id"]
        if region.any():
            seg_id = cat["id"] * _ID_STRIDE
            pan[region] = seg_id
            segments.append({"id": seg_id, "category_id": cat["id"], "isthing": 0})
    visible_masks = _visible_masks([m for _, m in shapes])
    for index, ((shape, _), visible) in enumerate(zip(shapes, visible_masks)):
        if not visible.any():
            continue
        cat_id = _CATEGORY_ID[shape["kind"]]
        seg_id = cat_id * _ID_STRIDE + index + 1
        pan[visible] = seg_id
        segments.append({"id": seg_id, "category_id": cat_id, "isthing": 1})
    segments = [s for s in segments if (pan == s["id"]).any()]
    return image, pan, segments


def render_scene(rng, height, width):
    """
    Render one random scene.

    Args:
        rng: ``numpy.random.Generator``; the scene is a function of its state.
        height, width: image size in pixels.

    Returns:
        image: (H, W, 3) uint8 RGB.
        pan: (H, W) int32 panoptic segment id of each pixel (no void pixels).
        segments: list of {"id", "category_id" (dataset id), "isthing"}.
    """
    background, stuff = _render_background(rng, height, width)
    shapes = _place_shapes(rng, height, width, int(rng.integers(1, 6)))
    return _compose(background, stuff, shapes, rng)


def render_video(seed, num_frames, height, width):
    """
    Frames of a short clip: shapes moving in straight lines (bouncing off the borders) over a
    fixed background, val-like scenes.

    Returns:
        list of ``num_frames`` (H, W, 3) uint8 RGB frames.
    """
    rng = np.random.default_rng([seed, 7])
    background, stuff = _render_background(rng, height, width)
    shapes = [shape for shape, _ in _place_shapes(rng, height, width, 4)]
    velocities = [rng.uniform(-0.025, 0.025, size=2) * np.array([width, height]) for _ in shapes]
    frames = []
    for _ in range(num_frames):
        placed = [(s, _shape_mask(s, height, width)) for s in shapes]
        frames.append(_compose(background, stuff, placed, rng)[0])
        for shape, velocity in zip(shapes, velocities):
            shape["center"] = shape["center"] + velocity
            for axis, limit in ((0, width), (1, height)):
                if not 0 <= shape["center"][axis] <= limit:
                    velocity[axis] = -velocity[axis]
    return frames


# ---------------------------------------------------------------------------------------------
# Writing the dataset
# ---------------------------------------------------------------------------------------------
def _bbox(mask):
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def _paths(root, split):
    return {
        "image_root": os.path.join(root, f"shapes_{split}"),
        "panoptic_root": os.path.join(root, "annotations", f"panoptic_shapes_{split}"),
        "panoptic_json": os.path.join(root, "annotations", f"panoptic_shapes_{split}.json"),
        "instances_json": os.path.join(root, "annotations", f"instances_shapes_{split}.json"),
        "sem_seg_root": os.path.join(root, f"panoptic_semseg_shapes_{split}"),
    }


def _write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, sort_keys=True, separators=(",", ":"))


def _write_split(root, split, num_images, size, seed):
    paths = _paths(root, split)
    for key in ("image_root", "panoptic_root", "sem_seg_root"):
        os.makedirs(paths[key], exist_ok=True)
    contiguous = {c["id"]: i for i, c in enumerate(SHAPES_CATEGORIES)}
    images, pan_annos, inst_annos = [], [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        image, pan, segments = render_scene(rng, size, size)
        stem = f"{index:06d}"
        image_id = index + 1
        Image.fromarray(image).save(os.path.join(paths["image_root"], stem + ".jpg"), quality=92)
        Image.fromarray(id2rgb(pan)).save(os.path.join(paths["panoptic_root"], stem + ".png"))
        semantic = np.full(pan.shape, 255, np.uint8)
        segments_info = []
        for seg in segments:
            mask = pan == seg["id"]
            semantic[mask] = contiguous[seg["category_id"]]
            info = {
                "id": seg["id"],
                "category_id": seg["category_id"],
                "iscrowd": 0,
                "area": int(mask.sum()),
                "bbox": _bbox(mask),
            }
            segments_info.append(info)
            if seg["isthing"]:
                rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                inst_annos.append(
                    dict(info, id=len(inst_annos) + 1, image_id=image_id, segmentation=rle)
                )
        Image.fromarray(semantic).save(os.path.join(paths["sem_seg_root"], stem + ".png"))
        images.append({"id": image_id, "file_name": stem + ".jpg", "height": size, "width": size})
        pan_annos.append(
            {"image_id": image_id, "file_name": stem + ".png", "segments_info": segments_info}
        )
    _write_json(
        paths["panoptic_json"],
        {"images": images, "annotations": pan_annos, "categories": SHAPES_CATEGORIES},
    )
    things = [c for c in SHAPES_CATEGORIES if c["isthing"]]
    _write_json(
        paths["instances_json"],
        {"images": images, "annotations": inst_annos, "categories": things},
    )


def generate_shapes_dataset(root, seed=0, num_train=2000, num_val=100, size=128):
    """
    Write the dataset under ``root`` unless the same version, seed and sizes are already there
    (see :func:`write_generated_dataset`).

    Returns:
        bool: True if the files were (re)generated, False if the existing ones were kept.
    """
    meta = {
        "generator": "mask2former.data.datasets.generated_shapes",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "num_images": {"train": num_train, "val": num_val},
        "size": size,
    }

    def write(folder):
        os.makedirs(os.path.join(folder, "annotations"))
        for split, num in (("train", num_train), ("val", num_val)):
            _write_split(folder, split, num, size, seed)

    return write_generated_dataset(root, meta, write)


def write_generated_dataset(root, meta, write):
    """
    Write a generated dataset under ``root`` with ``write(folder)``, unless ``root/meta.json``
    already holds ``meta`` (the generator's name under "generator", its version, seed and
    sizes).

    The files are written to ``root + ".partial"`` and moved to ``root`` when complete. A folder
    holding another version is replaced; a non-empty folder that was not written by this
    generator is an error (nothing is deleted).

    Returns:
        bool: True if the files were (re)generated, False if the existing ones were kept.
    """
    meta_path = os.path.join(root, "meta.json")
    if os.path.isfile(meta_path):
        with open(meta_path) as f:
            existing = json.load(f)
        if existing == meta:
            logger.info(f"Generated dataset is up to date in {root}")
            return False
        if existing.get("generator") != meta["generator"]:
            raise RuntimeError(
                f"{meta_path} was not written by this generator; choose another root"
            )
    elif os.path.isdir(root) and os.listdir(root):
        raise RuntimeError(
            f"{root} is not empty and has no meta.json of the {meta['generator']} generator: "
            "remove it or choose another root"
        )
    logger.info(f"Generating {meta['generator']} in {root}: {meta}")
    partial = root.rstrip(os.sep) + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    write(partial)
    _write_json(os.path.join(partial, "meta.json"), meta)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(partial, root)
    return True


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------
_PREPARE = "Generate it with: python tools/main_job.py (or generate_shapes_dataset(root))"


def load_shapes_panoptic(root, split):
    """
    Dataset dicts of the panoptic view: ``file_name``, ``image_id``, ``pan_seg_file_name``,
    ``sem_seg_file_name`` and ``segments_info`` (``id``, contiguous ``category_id``,
    ``isthing``, ``iscrowd``, ``area``, ``bbox``).
    """
    paths = _paths(root, split)
    return load_panoptic_json(
        paths["panoptic_json"],
        paths["image_root"],
        paths["panoptic_root"],
        panoptic_meta(SHAPES_CATEGORIES),
        _PREPARE,
        semseg_dir=paths["sem_seg_root"],
    )


def register_generated_shapes(root):
    """
    Register the generated shapes dataset under ``root`` (replacing earlier registrations of
    the same names), for each split in ("train", "val"):

    - ``shapes_panoptic_{split}``: panoptic view with semantic labels; its evaluator type
      ``coco_panoptic_seg`` gives panoptic (PQ), instance (mask AP) and semantic (mIoU) metrics.
    - ``shapes_instance_{split}``: COCO instance view (things only).
    - ``shapes_sem_seg_{split}``: semantic view (all categories).
    """
    meta = panoptic_meta(SHAPES_CATEGORIES)
    for split in SPLITS:
        paths = _paths(root, split)
        register_dataset(
            f"shapes_panoptic_{split}",
            lambda split=split: load_shapes_panoptic(root, split),
            image_root=paths["image_root"],
            panoptic_root=paths["panoptic_root"],
            panoptic_json=paths["panoptic_json"],
            json_file=paths["instances_json"],
            sem_seg_root=paths["sem_seg_root"],
            evaluator_type="coco_panoptic_seg",
            ignore_label=255,
            label_divisor=_ID_STRIDE,
            **meta,
        )
        register_dataset(
            f"shapes_instance_{split}",
            lambda paths=paths, split=split: load_coco_json(
                paths["instances_json"], paths["image_root"], f"shapes_instance_{split}"
            ),
            image_root=paths["image_root"],
            json_file=paths["instances_json"],
            evaluator_type="coco",
            thing_classes=_THING_NAMES,
            thing_colors=[c["color"] for c in SHAPES_CATEGORIES if c["isthing"]],
        )
        register_dataset(
            f"shapes_sem_seg_{split}",
            lambda paths=paths: load_sem_seg_checked(
                paths["sem_seg_root"], paths["image_root"], _PREPARE
            ),
            image_root=paths["image_root"],
            sem_seg_root=paths["sem_seg_root"],
            evaluator_type="sem_seg",
            ignore_label=255,
            stuff_classes=meta["stuff_classes"],
            stuff_colors=meta["stuff_colors"],
        )


def default_shapes_root():
    """``$DETECTRON2_DATASETS/generated/shapes`` (``datasets/generated/shapes`` by default)."""
    return os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "generated", "shapes")
