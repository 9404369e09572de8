"""
The dataset check: every image read, every mask decoded, every label map and panoptic PNG
compared with its annotation, before any training. It names each defect with its file and
record (kinds: :data:`~.formats.samples.DEFECT_KINDS`) and counts images, objects per class and
image sizes per split. ``tools/check_dataset.py`` prints it; training runs it on every split it
loads and refuses defects unless DATASETS.SKIP_INVALID_RECORDS drops the records (counted).
"""
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from panopticapi.utils import rgb2id
from pycocotools import mask as mask_util

from ..image_io import ImageReadError, read_image
from .formats import DEFECT_KINDS, Defect

__all__ = [
    "DatasetDefectsError", "SplitReport", "check_samples", "drop_defective", "split_report"
]

# Polygon points may lie this many pixels outside the image (annotation tools let users click
# on the border) before the polygon counts as outside the image.
OUTSIDE_TOLERANCE = 1.0
# Defects listed in full in an error message (the check tool lists them all).
_LISTED = 20


class DatasetDefectsError(ValueError):
    """A split with defects; ``defects`` lists them (kind, file, record, message)."""

    def __init__(self, name, defects, fix):
        self.defects = defects
        counts = Counter(d.kind for d in defects)
        lines = [f"Dataset {name} has {len(defects)} defect(s): "
                 + ", ".join(f"{n} {DEFECT_KINDS[k]} ({k})" for k, n in counts.most_common())]
        lines += [f"  {d}" for d in defects[:_LISTED]]
        if len(defects) > _LISTED:
            lines.append(f"  ... and {len(defects) - _LISTED} more (tools/check_dataset.py "
                         "lists them all)")
        lines.append(fix)
        super().__init__("\n".join(lines))


@dataclass
class SplitReport:
    """What the check found in one split: counts, sizes and defects."""

    name: str
    num_images: int = 0
    class_counts: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    defects: list = field(default_factory=list)
    skipped: int = 0
    unused_images: int = 0
    crowd: int = 0
    ignore_regions: int = 0
    embedded_images: int = 0

    def format(self, class_names, count_what):
        """A few lines for the log: images, image sizes, per-class counts, defects."""
        lines = [f"{self.name}: {self.num_images} images"
                 + (f" ({self.skipped} skipped for defects)" if self.skipped else "")
                 + (f"; {self.unused_images} images of the image folder have no annotation file "
                    "and are not used" if self.unused_images else "")]
        if self.sizes:
            heights = [h for (h, _), n in self.sizes.items() for _ in range(n)]
            widths = [w for (_, w), n in self.sizes.items() for _ in range(n)]
            common = ", ".join(f"{w}x{h} ({n})" for (h, w), n in self.sizes.most_common(3))
            lines.append(f"  image sizes (WxH): width {min(widths)}-{max(widths)}, height "
                         f"{min(heights)}-{max(heights)}; most common {common}")
        counts = ", ".join(f"{name} {self.class_counts.get(i, 0)}"
                           for i, name in enumerate(class_names))
        lines.append(f"  {count_what} per class: {counts}")
        if self.crowd:
            lines.append(f"  {self.crowd} crowd objects (iscrowd 1, not counted above): not "
                         "trained on, ignored by the evaluation (if they are single objects, "
                         "as CVAT exports masks, set crowd_as_objects: true)")
        if self.ignore_regions:
            lines.append(f"  {self.ignore_regions} regions to ignore (__ignore__): not trained "
                         "on, ignored by the evaluation")
        if self.embedded_images:
            lines.append(f"  {self.embedded_images} images taken from the annotation files "
                         "(imageData)")
        if self.defects:
            kinds = Counter(d.kind for d in self.defects)
            lines.append(f"  {len(self.defects)} defects: " + ", ".join(
                f"{n} {DEFECT_KINDS[k]} ({k})" for k, n in kinds.most_common()))
        return "\n".join(lines)


def _area_and_bounds(segmentation, height, width, record, source, key):
    """(area in pixels, defect or None) of one object's polygons or RLE."""
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not isinstance(polygon, list):
                return 0, Defect("annotation_unreadable", source, record,
                                 "segmentation must be a list of polygons [[x1, y1, x2, y2, "
                                 "...], ...] (is it one polygon without its outer brackets?)",
                                 key)
            if len(polygon) % 2:
                return 0, Defect("annotation_unreadable", source, record,
                                 "a polygon has an odd number of coordinates", key)
            if len(polygon) < 6:
                return 0, Defect("too_few_points", source, record,
                                 f"a polygon of {len(polygon) // 2} points; it needs 3 or more",
                                 key)
            xs, ys = np.asarray(polygon[0::2]), np.asarray(polygon[1::2])
            if (xs.min() < -OUTSIDE_TOLERANCE or ys.min() < -OUTSIDE_TOLERANCE
                    or xs.max() > width + OUTSIDE_TOLERANCE
                    or ys.max() > height + OUTSIDE_TOLERANCE):
                return 0, Defect(
                    "outside_image", source, record,
                    f"polygon spans x {xs.min():.1f}..{xs.max():.1f}, y {ys.min():.1f}.."
                    f"{ys.max():.1f}, outside the {width}x{height} image", key)
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
        return int(mask_util.area(rle)), None
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        return 0, Defect("annotation_unreadable", source, record,
                         "segmentation is neither polygons nor RLE", key)
    size = list(segmentation.get("size", []))
    if size != [height, width]:
        return 0, Defect("size_mismatch", source, record,
                         f"RLE of size {size} (HxW) on an image of {height}x{width}", key)
    if isinstance(segmentation["counts"], list):
        if sum(segmentation["counts"]) != height * width:
            return 0, Defect("annotation_unreadable", source, record,
                             "uncompressed RLE counts do not sum to height x width", key)
        segmentation = mask_util.frPyObjects(segmentation, height, width)
    try:
        return int(mask_util.area(segmentation)), None
    except (TypeError, ValueError) as e:
        return 0, Defect("annotation_unreadable", source, record, f"bad RLE: {e}", key)


def _check_objects(sample):
    """Defects of the sample's objects and ignore regions; counts its non-crowd objects."""
    defects = []
    for obj in sample.objects + sample.ignore_regions:
        area, defect = _area_and_bounds(obj.segmentation, sample.height, sample.width,
                                        obj.record, sample.source, sample.file_name)
        if defect is None and area == 0:
            defect = Defect("empty_mask", sample.source, obj.record,
                            "the mask covers no pixel", sample.file_name)
        if defect is None and obj.box is not None and len(obj.box) == 4:
            x, y, w, h = obj.box
            if (x < -OUTSIDE_TOLERANCE or y < -OUTSIDE_TOLERANCE
                    or x + w > sample.width + OUTSIDE_TOLERANCE
                    or y + h > sample.height + OUTSIDE_TOLERANCE):
                defect = Defect("outside_image", sample.source, obj.record,
                                f"bbox {obj.box} reaches outside the {sample.width}x"
                                f"{sample.height} image", sample.file_name)
        if defect is not None:
            defects.append(defect)
        elif obj.category is not None and not obj.iscrowd:
            sample.class_counts[obj.category] += 1
    return defects


def _read_map(path, sample, mode, what):
    """(map, defect): a label / panoptic PNG of the sample's size."""
    try:
        values = read_image(path, format=mode)
    except ImageReadError as e:
        kind = "annotation_missing" if "does not exist" in str(e) else "annotation_unreadable"
        return None, Defect(kind, path, what, str(e), sample.file_name)
    if values.shape[:2] != (sample.height, sample.width):
        return None, Defect("size_mismatch", path, what,
                            f"{values.shape[1]}x{values.shape[0]} (WxH), its image "
                            f"{sample.file_name} is {sample.width}x{sample.height}",
                            sample.file_name)
    return values, None


def _check_sem_seg(sample, num_classes, ignore_label):
    labels, defect = _read_map(sample.sem_seg_file, sample, None, "label PNG")
    if defect is not None:
        return [defect]
    if labels.ndim != 2:
        return [Defect("annotation_unreadable", sample.sem_seg_file, "label PNG",
                       f"has {labels.shape[2]} channels; a label map has one (class ids, or a "
                       "palette PNG whose indices are the ids): convert color-coded labels to "
                       "ids", sample.file_name)]
    values = np.unique(labels)
    bad = [int(v) for v in values if v >= num_classes and v != ignore_label]
    if bad:
        return [Defect("semantic_value", sample.sem_seg_file, "label PNG",
                       f"values {bad[:10]} are neither class ids 0..{num_classes - 1} nor the "
                       f"ignore value {ignore_label}", sample.file_name)]
    sample.class_counts.update(int(v) for v in values if v < num_classes)
    return []


def _check_panoptic(sample):
    if sample.pan_seg_file is None:
        return []  # the reader reported the missing annotation
    png, defect = _read_map(sample.pan_seg_file, sample, "RGB", "panoptic PNG")
    if defect is not None:
        return [defect]
    ids, areas = np.unique(rgb2id(png), return_counts=True)
    present = dict(zip(ids.tolist(), areas.tolist()))
    listed = {s["id"] for s in sample.segments}
    defects = []
    unknown = sorted(set(present) - listed - {0})
    if unknown:
        defects.append(Defect("panoptic_segment_not_in_json", sample.pan_seg_file,
                              "panoptic PNG", f"segment ids {unknown[:10]} are not in the json's "
                              "segments_info of this image", sample.file_name))
    for segment in sample.segments:
        if present.get(segment["id"], 0) == 0:
            defects.append(Defect("empty_mask", sample.source,
                                  f"segment id {segment['id']} of image {sample.image_id}",
                                  "the segment covers no pixel of its PNG", sample.file_name))
        elif not segment.get("iscrowd"):
            sample.class_counts[segment["category_id"]] += 1
    return defects


def check_samples(samples, num_classes, ignore_label):
    """
    Check every sample of a split: its image is readable, its masks, label map or panoptic PNG
    are valid. Sets each sample's ``height`` and ``width`` to its image's and its
    ``class_counts`` (objects, segments, or for label maps images, per contiguous class id).

    Returns:
        list[Defect]: the defects found.
    """
    defects_found = []
    for sample in samples:
        try:
            image = read_image(sample.file_name, format=None)
        except ImageReadError as e:
            kind = "image_missing" if "does not exist" in str(e) else "image_unreadable"
            defects_found.append(Defect(kind, sample.source, f"image {sample.file_name}",
                                        str(e), sample.file_name))
            continue
        height, width = image.shape[:2]
        if (sample.height, sample.width) not in ((None, None), (height, width)):
            defects_found.append(Defect(
                "size_mismatch", sample.source, f"image {sample.file_name}",
                f"the annotation says {sample.width}x{sample.height} (WxH), the image is "
                f"{width}x{height}", sample.file_name))
            continue
        sample.height, sample.width = height, width
        if sample.objects is not None:
            defects = _check_objects(sample)
        elif sample.sem_seg_file is not None:
            defects = _check_sem_seg(sample, num_classes, ignore_label)
        else:
            defects = _check_panoptic(sample)
        defects_found.extend(defects)
    return defects_found


def split_report(name, kept, defects, skipped=0):
    """The :class:`SplitReport` of a split's kept (checked) samples and its defects."""
    report = SplitReport(name, num_images=len(kept), defects=defects, skipped=skipped)
    for sample in kept:
        report.sizes[(sample.height, sample.width)] += 1
        report.class_counts.update(sample.class_counts)
        report.crowd += sum(bool(o.iscrowd) for o in sample.objects or ())
        report.crowd += sum(bool(s.get("iscrowd")) for s in sample.segments)
        report.ignore_regions += len(sample.ignore_regions)
        report.embedded_images += sample.embedded_image
    return report


def drop_defective(samples, defects):
    """The samples that no defect names (by image path), and how many were dropped."""
    bad = {d.sample_key for d in defects if d.sample_key is not None}
    kept = [s for s in samples if s.file_name not in bad]
    return kept, len(samples) - len(kept)
