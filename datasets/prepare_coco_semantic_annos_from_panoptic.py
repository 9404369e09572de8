#!/usr/bin/env python
"""
COCO panoptic annotations -> semantic labels for ``coco_2017_{train,val}_panoptic_with_sem_seg``.

Reads ``$DETECTRON2_DATASETS/coco/annotations/panoptic_{train,val}2017.json`` and the PNGs in
``coco/panoptic_{train,val}2017/``; writes ``coco/panoptic_semseg_{train,val}2017/*.png``
with the contiguous class id (0..132, the order of Detectron2's COCO_CATEGORIES) of each
pixel's segment and 255 where there is no segment.

Usage: python datasets/prepare_coco_semantic_annos_from_panoptic.py [DATASETS_ROOT]
"""
import functools
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np
import tqdm
from PIL import Image

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from mask2former.data.dataset_mappers.utils import panoptic_ids, semantic_from_panoptic

IGNORE_LABEL = 255


def convert(annotation, panoptic_dir, output_dir):
    """Write the semantic PNG of one panoptic json annotation."""
    contiguous = {c["id"]: i for i, c in enumerate(COCO_CATEGORIES)}
    segments = [dict(s, category_id=contiguous[s["category_id"]])
                for s in annotation["segments_info"]]
    pan = panoptic_ids(np.asarray(Image.open(panoptic_dir / annotation["file_name"])
                                  .convert("RGB"))).numpy()
    semantic = semantic_from_panoptic(pan, segments, IGNORE_LABEL).astype(np.uint8)
    Image.fromarray(semantic).save(output_dir / annotation["file_name"])


def main(root):
    root = Path(root) / "coco"
    for split in ("train", "val"):
        json_file = root / "annotations" / f"panoptic_{split}2017.json"
        panoptic_dir = root / f"panoptic_{split}2017"
        for path in (json_file, panoptic_dir):
            if not path.exists():
                raise FileNotFoundError(
                    f"{path} not found: download COCO's panoptic_annotations_trainval2017.zip, "
                    f"unzip it into {root}, and unzip annotations/panoptic_{split}2017.zip "
                    f"into {root}.")
        output_dir = root / f"panoptic_semseg_{split}2017"
        output_dir.mkdir(exist_ok=True)
        with open(json_file) as f:
            annotations = json.load(f)["annotations"]
        work = functools.partial(convert, panoptic_dir=panoptic_dir, output_dir=output_dir)
        with mp.Pool(processes=min(len(annotations), mp.cpu_count()) or 1) as pool:
            for _ in tqdm.tqdm(pool.imap_unordered(work, annotations, chunksize=16),
                               total=len(annotations), desc=f"COCO {split}"):
                pass


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.getenv("DETECTRON2_DATASETS", "datasets"))
