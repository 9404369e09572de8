"""Datasets (registered on import, see :mod:`.datasets`) and training dataset mappers."""
from . import datasets
from .dataset_mappers import DATASET_MAPPERS, build_train_mapper

__all__ = ["DATASET_MAPPERS", "build_train_mapper", "datasets"]
