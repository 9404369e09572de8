#!/usr/bin/env python
"""
Check a dataset file before training: every image read, every mask decoded, every label map
and panoptic PNG compared with its annotation.

    python tools/check_dataset.py my_data.yaml

Prints the task, format and classes, then for each split the number of images, the image
sizes, the objects (or, for label maps, the images) per class and every defect with its file
and record. Exits with status 1 when a split has defects. Training runs the same check and
refuses such a dataset unless DATASETS.SKIP_INVALID_RECORDS True drops the defective images.
Nothing is written but the images that LabelMe files embed (their imageData), once, to the
dataset file's .mask2former/ folder.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mask2former.data.datasets.dataset_file import DatasetFileError  # noqa: E402
from mask2former.data.datasets.register_dataset_file import check_dataset_file  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", metavar="FILE", help="the dataset file (YAML)")
    args = parser.parse_args(argv)
    try:
        registered, reports = check_dataset_file(args.dataset)
    except (DatasetFileError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dataset, categories = registered.dataset, registered.categories
    print(f"{dataset.path}: {dataset.task} task, {registered.format} annotations, "
          f"{len(categories)} classes")
    for index, c in enumerate(categories):
        kind = "" if dataset.task != "panoptic" else " (thing)" if c.isthing else " (stuff)"
        print(f"  {index}: {c.name} (id {c.id}){kind}")
    for note in registered.notes:
        print(f"  note: {note}")
    count_what = "images" if registered.format == "sem_seg" else "objects"
    defects = 0
    for report in reports.values():
        print(report.format([c.name for c in categories], count_what))
        for defect in report.defects:
            print(f"    {defect}")
        defects += len(report.defects)
    print(f"{defects} defect(s)" + (": fix them, or train with DATASETS.SKIP_INVALID_RECORDS "
                                    "True to drop the images they name" if defects else ""))
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
