#!/usr/bin/env python
"""
ADE20K scene parsing (ADEChallengeData2016) -> labels for ``ade20k_sem_seg_{train,val}``.

Reads ``$DETECTRON2_DATASETS/ADEChallengeData2016/annotations/{training,validation}/*.png``
(0 = other, 1..150 = classes) and writes ``annotations_detectron2/{training,validation}/*.png``
with label k -> k - 1 and 0 -> 255 (ignored).

Usage: python datasets/prepare_ade20k_sem_seg.py [DATASETS_ROOT]
"""
import os
import sys
from pathlib import Path

import numpy as np
import tqdm
from PIL import Image


def convert(input_path, output_path):
    """Shift one label PNG: 0 -> 255, k -> k - 1."""
    label = np.asarray(Image.open(input_path))
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"{input_path}: expected a single-channel 8-bit label PNG, got "
                         f"dtype {label.dtype} and shape {label.shape}.")
    Image.fromarray((label.astype(np.int64) - 1).astype(np.uint8)).save(output_path)


def main(root):
    root = Path(root) / "ADEChallengeData2016"
    for split in ("training", "validation"):
        input_dir = root / "annotations" / split
        if not input_dir.is_dir():
            raise FileNotFoundError(f"{input_dir} not found: download and unzip "
                                    f"ADEChallengeData2016.zip into {root.parent}.")
        output_dir = root / "annotations_detectron2" / split
        output_dir.mkdir(parents=True, exist_ok=True)
        for path in tqdm.tqdm(sorted(input_dir.glob("*.png")), desc=f"ADE20K {split}"):
            convert(path, output_dir / path.name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.getenv("DETECTRON2_DATASETS", "datasets"))
