"""
Reader of YOLO segmentation labels (Ultralytics' format): one txt per image, of the same
relative path and name, one object per line ``class x1 y1 x2 y2 ...`` with coordinates
normalized to [0, 1] by the image width and height. An image without a txt has no objects.
"""
from PIL import Image

from .folders import files_by_stem, image_files
from .samples import Defect, Sample, SegmentObject

__all__ = ["read_yolo"]


def _image_size(path):
    """(height, width) from the file's header (EXIF orientation applied), or None."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                width, height = height, width
            return height, width
    except (OSError, ValueError):
        return None


def _parse_line(line, label, number, num_classes, size):
    """One txt line -> (SegmentObject or None, Defect or None)."""
    record = f"line {number}"
    tokens = line.split()
    try:
        category = int(tokens[0])
        coords = [float(t) for t in tokens[1:]]
    except ValueError:
        return None, Defect("annotation_unreadable", label, record,
                            f"not 'class x1 y1 x2 y2 ...' numbers: {line.strip()[:60]!r}")
    if not 0 <= category < num_classes:
        return None, Defect("unknown_category", label, record,
                            f"class {category} is not in 0..{num_classes - 1} (the names file)")
    if len(coords) % 2:
        return None, Defect("annotation_unreadable", label, record,
                            f"{len(coords)} coordinates: x and y must come in pairs")
    if len(coords) == 4:
        return None, Defect("box_only", label, record,
                            "'class cx cy w h' is a YOLO detection box, not a segmentation "
                            "polygon 'class x1 y1 x2 y2 x3 y3 ...': segmentation labels are needed")
    height, width = size
    polygon = [c * (width if i % 2 == 0 else height) for i, c in enumerate(coords)]
    return SegmentObject(category=category, segmentation=[polygon], record=record), None


def read_yolo(split, categories):
    """
    Read the YOLO txt files of ``split.annotations`` for the images of ``split.images``.

    Returns:
        (list[Sample], list[Defect]): one sample per image (with no objects when it has no txt);
        txt files without an image and malformed lines are defects. Coordinates are converted
        to pixels with the image's size; an unreadable image's sample has no objects (the check
        reports the image).
    """
    images = image_files(split.images)
    labels = files_by_stem(split.annotations, (".txt",))
    samples, defects = [], []
    for stem, image in images.items():
        sample = Sample(file_name=image, image_id=stem, source=labels.get(stem, image),
                        objects=[])
        samples.append(sample)
        size = _image_size(image)
        if stem not in labels or size is None:
            continue
        sample.height, sample.width = size
        with open(labels[stem]) as f:
            lines = f.readlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            obj, defect = _parse_line(line, labels[stem], number, len(categories), size)
            if defect is not None:
                defect.sample_key = image
                defects.append(defect)
            else:
                sample.objects.append(obj)
    for stem, label in labels.items():
        if stem not in images:
            defects.append(Defect("unknown_image", label, "label file",
                                  f"no image {stem}.* in {split.images}"))
    return samples, defects
