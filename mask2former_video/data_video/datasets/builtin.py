"""
The YouTube-VIS 2019 and 2021 datasets in their official layout under a datasets root::

    ytvis_2019/{train,valid,test}/JPEGImages/<video>/<frame>.jpg
    ytvis_2019/{train,valid,test}.json
    ytvis_2021/... (the same)

registered as ``ytvis_2019_{train,val,test}`` and ``ytvis_2021_{train,val,test}``.
"""
import os

from .ytvis import register_ytvis_instances
from .ytvis_categories import YTVIS_CATEGORIES_2019, YTVIS_CATEGORIES_2021

_SPLITS = {"train": "train", "val": "valid", "test": "test"}
_PREPARE = ("Download YouTube-VIS {year} (https://youtube-vos.org/dataset/vis/) and unpack it "
            "into $DETECTRON2_DATASETS/ytvis_{year}/ as datasets/README.md shows")


def register_all_ytvis(root):
    """Register ``ytvis_{2019,2021}_{train,val,test}`` with their files under ``root``."""
    for year, categories in (("2019", YTVIS_CATEGORIES_2019), ("2021", YTVIS_CATEGORIES_2021)):
        for split, folder in _SPLITS.items():
            register_ytvis_instances(
                f"ytvis_{year}_{split}",
                categories,
                json_file=os.path.join(root, f"ytvis_{year}", f"{folder}.json"),
                image_root=os.path.join(root, f"ytvis_{year}", folder, "JPEGImages"),
                prepare=_PREPARE.format(year=year),
            )
