"""Checks of a training config that must fail at start-up, not after days of training."""
import difflib

from detectron2.data import DatasetCatalog

__all__ = ["check_datasets_registered"]


def check_datasets_registered(cfg):
    """
    Raise ``KeyError`` naming the config key, the dataset and close registered names when
    DATASETS.TRAIN or DATASETS.TEST names a dataset that is not registered. (Detectron2 only
    notices an unknown test dataset when it evaluates, at the end of training.)
    """
    registered = DatasetCatalog.list()
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            if name not in registered:
                close = difflib.get_close_matches(name, registered, n=3)
                hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise KeyError(
                    f"DATASETS.{key} names the dataset {name!r}, which is not registered.{hint} "
                    "Importing mask2former registers the built-in datasets (see "
                    "datasets/README.md); register your own with DatasetCatalog.register."
                )
