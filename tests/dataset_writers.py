"""
Writers of tiny datasets in the exact on-disk layouts of the official downloads (COCO,
ADE20K, ADE20K-Full, Cityscapes, Mapillary Vistas), for the data tests. Each writer puts a
few generated images with annotations under ``root`` and returns nothing; the same scene
layout (rectangles of stuff and things) is used throughout.
"""
import json
import pickle
from pathlib import Path

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

# Image size (H, W) of every generated image.
SIZE = (48, 64)


def _image(seed, size=SIZE):
    """A random RGB image (H, W, 3) uint8."""
    return np.random.RandomState(seed).randint(0, 256, size=size + (3,), dtype=np.uint8)


def _save(array, path, **kwargs):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def scene(index, size=SIZE):
    """
    The layout of image ``index``: two stuff regions (top / bottom half, labels "stuff0" and
    "stuff1") and two thing rectangles ("thing0", "thing1"; a second "thing0" on odd images).

    Returns:
        list[tuple[str, (H, W) bool mask]]: in painting order (later ones on top).
    """
    h, w = size
    regions = []

    def rect(name, y0, x0, y1, x1):
        mask = np.zeros(size, dtype=bool)
        mask[y0:y1, x0:x1] = True
        regions.append((name, mask))

    rect("stuff0", 0, 0, h // 2, w)
    rect("stuff1", h // 2, 0, h, w)
    rect("thing0", 4 + index, 6, 20 + index, 22)
    rect("thing1", 24, 30 + index, 44, 58)
    if index % 2:
        rect("thing0", 8, 40, 18, 60)
    return regions


def _visible(regions):
    """Drop the parts of each region covered by later regions; skip empty ones."""
    out = []
    covered = np.zeros(regions[0][1].shape, dtype=bool) if regions else None
    for name, mask in reversed(regions):
        visible = mask & ~covered
        covered |= mask
        if visible.any():
            out.append((name, visible))
    return out[::-1]


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
            int(ys.max() - ys.min() + 1)]


# ---------------------------------------------------------------- COCO
# COCO category ids used for the scene's regions.
COCO_SCENE_IDS = {"stuff0": 184, "stuff1": 187, "thing0": 1, "thing1": 3}


def write_coco(root, num_images=3, empty_last_train=True):
    """
    ``coco/{train,val}2017/*.jpg``, ``coco/annotations/instances_{split}2017.json``
    (polygon annotations), ``coco/annotations/panoptic_{split}2017.json`` and
    ``coco/panoptic_{split}2017/*.png``. With ``empty_last_train``, the last training image
    has no annotated segment.
    """
    root = Path(root) / "coco"
    things = [c for c in COCO_CATEGORIES if c["isthing"]]
    for split in ("train", "val"):
        images, instances, panoptic = [], [], []
        for i in range(num_images):
            image_id = i + 1
            name = f"{image_id:012d}"
            _save(_image(i), root / f"{split}2017" / f"{name}.jpg", quality=95)
            images.append({"id": image_id, "file_name": f"{name}.jpg", "height": SIZE[0],
                           "width": SIZE[1]})
            regions = [] if (empty_last_train and split == "train" and i == num_images - 1) \
                else _visible(scene(i))
            pan = np.zeros(SIZE, dtype=np.int64)
            segments = []
            for k, (region, mask) in enumerate(regions):
                category = COCO_SCENE_IDS[region]
                segment_id = category * 1000 + k + 1
                pan[mask] = segment_id
                segments.append({"id": segment_id, "category_id": category, "iscrowd": 0,
                                 "bbox": _bbox(mask), "area": int(mask.sum())})
                if region.startswith("thing"):
                    x, y, bw, bh = _bbox(mask)
                    instances.append({
                        "id": len(instances) + 1, "image_id": image_id, "category_id": category,
                        "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]],
                        "area": float(bw * bh), "bbox": [x, y, bw, bh], "iscrowd": 0,
                    })
            _save(id2rgb(pan), root / f"panoptic_{split}2017" / f"{name}.png")
            panoptic.append({"image_id": image_id, "file_name": f"{name}.png",
                             "segments_info": segments})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        with open(root / "annotations" / f"instances_{split}2017.json", "w") as f:
            json.dump({"images": images, "annotations": instances,
                       "categories": [{"id": c["id"], "name": c["name"]} for c in things]}, f)
        with open(root / "annotations" / f"panoptic_{split}2017.json", "w") as f:
            json.dump({"images": images, "annotations": panoptic,
                       "categories": COCO_CATEGORIES}, f)


# ---------------------------------------------------------------- ADE20K
# Scene-parsing label (1..150) and instance category (1..100, 0 = stuff) of each region:
# wall, floor (stuff); bed, person (things).
ADE20K_SCENE_LABELS = {"stuff0": (1, 0), "stuff1": (4, 0), "thing0": (8, 1), "thing1": (13, 4)}


def write_ade20k(root, num_images=2):
    """
    ``ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_*.jpg``,
    ``annotations/{split}/*.png`` (0 = other, 1..150) and the instance annotations
    ``annotations_instance/{split}/*.png`` (R = instance category, G = instance id).
    The right-most 4 columns are "other" (label 0).
    """
    root = Path(root) / "ADEChallengeData2016"
    for split, dirname in (("train", "training"), ("val", "validation")):
        for i in range(num_images):
            name = f"ADE_{split}_{i + 1:08d}"
            _save(_image(10 + i), root / "images" / dirname / f"{name}.jpg", quality=95)
            label = np.zeros(SIZE, dtype=np.uint8)
            instance = np.zeros(SIZE + (3,), dtype=np.uint8)
            for k, (region, mask) in enumerate(_visible(scene(i))):
                sem_label, inst_category = ADE20K_SCENE_LABELS[region]
                label[mask] = sem_label
                if inst_category:
                    instance[mask, 0] = inst_category
                    instance[mask, 1] = k + 1
            label[:, -4:] = 0
            instance[:, -4:] = 0
            _save(label, root / "annotations" / dirname / f"{name}.png")
            _save(instance, root / "annotations_instance" / dirname / f"{name}.png")


# Class values (R // 10 * 256 + G of *_seg.png) of the ADE20K-Full scene: wall, sky, an
# object outside the 847 classes (ignored), person.
ADE20K_FULL_SCENE_IDS = {"stuff0": 2978, "stuff1": 2420, "thing0": 5, "thing1": 1831}


def write_ade20k_full(root, num_images=2):
    """
    ``ADE20K_2021_17_01/images/ADE/{training,validation}/<scene>/ADE_*.jpg`` with their
    ``*_seg.png`` and the index ``ADE20K_2021_17_01/index_ade20k.pkl``.
    """
    root = Path(root)
    folders, filenames = [], []
    for split, dirname in (("train", "training"), ("val", "validation")):
        folder = f"ADE20K_2021_17_01/images/ADE/{dirname}/home_or_hotel/bedroom"
        for i in range(num_images):
            name = f"ADE_{split}_{i + 1:08d}.jpg"
            _save(_image(20 + i), root / folder / name, quality=95)
            seg = np.zeros(SIZE + (3,), dtype=np.uint8)
            for region, mask in _visible(scene(i)):
                value = ADE20K_FULL_SCENE_IDS[region]
                seg[mask, 0] = value // 256 * 10
                seg[mask, 1] = value % 256
            _save(seg, root / folder / name.replace(".jpg", "_seg.png"))
            folders.append(folder)
            filenames.append(name)
    with open(root / "ADE20K_2021_17_01" / "index_ade20k.pkl", "wb") as f:
        pickle.dump({"folder": folders, "filename": filenames}, f)


# ---------------------------------------------------------------- Mapillary Vistas
# Labels (0..65) of the scene: road, sky (stuff); person, car (things).
MAPILLARY_SCENE_LABELS = {"stuff0": 27, "stuff1": 13, "thing0": 19, "thing1": 55}


def write_mapillary_vistas(root, num_images=2):
    """
    ``mapillary_vistas/{training,validation}/images/*.jpg``, ``labels/*.png`` (8-bit
    palette, 65 = unlabeled) and ``panoptic/panoptic_2018.json`` + ``panoptic/*.png``
    (category id = label + 1). The bottom 4 rows are unlabeled.
    """
    from mask2former.data.datasets.mapillary_vistas_categories import MAPILLARY_VISTAS_LABELS

    palette = [v for c in MAPILLARY_VISTAS_LABELS for v in c["color"]]
    root = Path(root) / "mapillary_vistas"
    for dirname in ("training", "validation"):
        images, annotations = [], []
        for i in range(num_images):
            name = f"{dirname[:3]}{i:019d}"
            _save(_image(30 + i), root / dirname / "images" / f"{name}.jpg", quality=95)
            label = np.full(SIZE, 65, dtype=np.uint8)
            pan = np.zeros(SIZE, dtype=np.int64)
            segments = []
            for k, (region, mask) in enumerate(_visible(scene(i))):
                mask = mask.copy()
                mask[-4:] = False
                value = MAPILLARY_SCENE_LABELS[region]
                label[mask] = value
                pan[mask] = k + 1
                segments.append({"id": k + 1, "category_id": value + 1, "iscrowd": 0,
                                 "bbox": _bbox(mask), "area": int(mask.sum())})
            label_image = Image.fromarray(label, mode="P")
            label_image.putpalette(palette)
            (root / dirname / "labels").mkdir(parents=True, exist_ok=True)
            label_image.save(root / dirname / "labels" / f"{name}.png")
            _save(id2rgb(pan), root / dirname / "panoptic" / f"{name}.png")
            images.append({"id": name, "file_name": f"{name}.jpg", "height": SIZE[0],
                           "width": SIZE[1]})
            annotations.append({"image_id": name, "file_name": f"{name}.png",
                                "segments_info": segments})
        categories = [
            {"id": k + 1, "name": c["readable"], "supercategory": c["name"],
             "isthing": int(c["instances"]), "color": c["color"]}
            for k, c in enumerate(MAPILLARY_VISTAS_LABELS[:65])
        ]
        with open(root / dirname / "panoptic" / "panoptic_2018.json", "w") as f:
            json.dump({"images": images, "annotations": annotations,
                       "categories": categories}, f)


# ---------------------------------------------------------------- Cityscapes
# Cityscapes label names of the scene.
CITYSCAPES_SCENE_LABELS = {"stuff0": "building", "stuff1": "road", "thing0": "person",
                           "thing1": "car"}


def write_cityscapes(root, num_images=2):
    """
    ``cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png`` and
    ``cityscapes/gtFine/{split}/<city>/*_gtFine_{polygons.json,labelIds.png,instanceIds.png}``,
    the PNGs rendered from the polygons by cityscapesscripts as for the official release.
    """
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    root = Path(root) / "cityscapes"
    h, w = SIZE
    for split in ("train", "val"):
        for i in range(num_images):
            stem = f"aachen_{i:06d}_000019"
            _save(_image(40 + i), root / "leftImg8bit" / split / "aachen"
                  / f"{stem}_leftImg8bit.png")
            objects = []
            for region, mask in scene(i):
                x, y, bw, bh = _bbox(mask)
                objects.append({"label": CITYSCAPES_SCENE_LABELS[region], "polygon": [
                    [x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]]})
            gt_dir = root / "gtFine" / split / "aachen"
            gt_dir.mkdir(parents=True, exist_ok=True)
            json_path = gt_dir / f"{stem}_gtFine_polygons.json"
            with open(json_path, "w") as f:
                json.dump({"imgHeight": h, "imgWidth": w, "objects": objects}, f)
            annotation = Annotation()
            annotation.fromJsonFile(str(json_path))
            createLabelImage(annotation, "ids").save(gt_dir / f"{stem}_gtFine_labelIds.png")
            instance_ids = np.asarray(createInstanceImage(annotation, "ids")).astype(np.uint16)
            _save(instance_ids, gt_dir / f"{stem}_gtFine_instanceIds.png")

