"""
Reader of semantic label PNGs: one single-channel PNG of class ids (or a palette PNG, Pascal VOC
style, whose palette indices are the ids) per image, of the same relative path and name.
"""
from .folders import files_by_stem, image_files
from .samples import Defect, Sample

__all__ = ["read_sem_seg"]


def read_sem_seg(split, categories):
    """
    Pair the images of ``split.images`` with the PNGs of ``split.annotations``.

    Returns:
        (list[Sample], list[Defect]): a sample with ``sem_seg_file`` per image that has a label
        PNG; images without one and PNGs without an image are defects.
    """
    images = image_files(split.images)
    labels = files_by_stem(split.annotations, (".png",))
    samples, defects = [], []
    for stem, image in images.items():
        if stem not in labels:
            defects.append(Defect("annotation_missing", image, "image",
                                  f"no label PNG {stem}.png in {split.annotations}"))
            continue
        samples.append(Sample(file_name=image, image_id=stem, source=labels[stem],
                              sem_seg_file=labels[stem]))
    for stem, label in labels.items():
        if stem not in images:
            defects.append(Defect("unknown_image", label, "label PNG",
                                  f"no image {stem}.* in {split.images}"))
    return samples, defects
