"""
Datasets (registered on import, see :mod:`.datasets`), the dataset mappers and the image
reader they share (:mod:`.image_io`).
"""
from . import datasets, image_io
from .dataset_mappers import DATASET_MAPPERS, InferenceDatasetMapper, build_train_mapper

__all__ = [
    "DATASET_MAPPERS", "InferenceDatasetMapper", "build_train_mapper", "datasets", "image_io"
]
