"""Checks of a training config that must fail at start-up, not after days of training."""
import difflib

from detectron2.data import DatasetCatalog

__all__ = ["check_datasets_registered"]


def check_datasets_registered(cfg):
    """
    Raise ``KeyError`` naming the config key, the dataset and close registered names when
    DATASETS.TRAIN or DATASETS.TEST (or MODEL.MASK_FORMER.CLASS_HEAD_INIT.WEIGHTS_DATASET, when
    BY_NAME uses it) names a dataset that is not registered. (Detectron2 only notices an unknown
    test dataset when it evaluates, at the end of training.)
    """
    registered = DatasetCatalog.list()
    class_head_init = cfg.MODEL.MASK_FORMER.CLASS_HEAD_INIT
    keys = {"DATASETS.TRAIN": cfg.DATASETS.TRAIN, "DATASETS.TEST": cfg.DATASETS.TEST}
    if class_head_init.BY_NAME and class_head_init.WEIGHTS_DATASET:
        keys["MODEL.MASK_FORMER.CLASS_HEAD_INIT.WEIGHTS_DATASET"] = [
            class_head_init.WEIGHTS_DATASET]
    for key, names in keys.items():
        for name in names:
            if name not in registered:
                close = difflib.get_close_matches(name, registered, n=3)
                hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise KeyError(
                    f"{key} names the dataset {name!r}, which is not registered.{hint} "
                    "Importing mask2former registers the built-in datasets (see "
                    "datasets/README.md); register your own with DatasetCatalog.register."
                )
