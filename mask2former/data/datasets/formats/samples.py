"""
What every annotation reader returns: one :class:`Sample` per image (its objects, or its label /
panoptic PNG) and the :class:`Defect` records it found, each naming a file and a record.
"""
from collections import Counter
from dataclasses import dataclass, field
from typing import List, Optional, Union

__all__ = ["DEFECT_KINDS", "Defect", "SegmentObject", "Sample"]

# Defect kind -> what it means (the check's report groups defects by kind).
DEFECT_KINDS = {
    "image_missing": "image file missing",
    "image_unreadable": "image file unreadable",
    "annotation_missing": "annotation file missing for an image",
    "annotation_unreadable": "annotation file unreadable or malformed",
    "unknown_image": "annotation of an unknown image",
    "unknown_category": "annotation of an unknown category",
    "too_few_points": "polygon of fewer than 3 points",
    "empty_mask": "empty or zero-area mask",
    "box_only": "object with a box but no mask",
    "outside_image": "mask or box outside the image",
    "size_mismatch": "annotation size differs from the image size",
    "duplicate_id": "duplicate id",
    "semantic_value": "semantic value outside the classes and not the ignore value",
    "panoptic_segment_not_in_json": "panoptic PNG segment not in the json",
}


@dataclass
class Defect:
    """
    One defect: ``kind`` (a key of ``DEFECT_KINDS``), the ``file`` and the ``record`` in it
    (e.g. "annotation id 7", "shape 2", "line 4"), a ``message`` with the fix, and the image
    (``sample_key``: the sample's image path) whose record is dropped when defects are skipped,
    or None when the defective record belongs to no image.
    """

    kind: str
    file: str
    record: str
    message: str
    sample_key: Optional[str] = None

    def __str__(self):
        return f"[{self.kind}] {self.file}, {self.record}: {self.message}"


@dataclass
class SegmentObject:
    """
    One object of a vector format: ``category`` (contiguous class id; None for a region to
    ignore), ``segmentation`` (a list of polygons [x1, y1, x2, y2, ...] in pixels, or a COCO RLE
    dict, compressed or not), ``iscrowd``, the ``box`` the file declares (XYWH, or None), and
    ``record`` (where it is).
    """

    category: Optional[int]
    segmentation: Union[list, dict]
    record: str
    iscrowd: int = 0
    box: Optional[List[float]] = None


@dataclass
class Sample:
    """
    One image of a split: ``file_name`` (image path), ``image_id``, ``source`` (the annotation
    file), the size the annotations declare (``height``, ``width``; None: read from the
    image), and its annotation: ``objects`` (vector formats), ``sem_seg_file`` (label PNG), or
    ``pan_seg_file`` + ``segments`` (COCO panoptic segments_info, contiguous "category_id").
    ``ignore_regions``: regions of no class to leave out of training and evaluation (LabelMe's
    "__ignore__" shapes). ``embedded_image``: the image was taken from the annotation file
    (LabelMe's "imageData") and written to ``file_name``.
    The check sets ``class_counts`` (contiguous class id -> non-crowd objects, segments or
    label maps).
    """

    file_name: str
    image_id: Union[int, str]
    source: str
    height: Optional[int] = None
    width: Optional[int] = None
    objects: Optional[List[SegmentObject]] = None
    sem_seg_file: Optional[str] = None
    pan_seg_file: Optional[str] = None
    segments: List[dict] = field(default_factory=list)
    ignore_regions: List[SegmentObject] = field(default_factory=list)
    embedded_image: bool = False
    class_counts: Counter = field(default_factory=Counter)
