"""Video datasets (registered on import), the clip dataset mapper and the video data loaders."""
from . import datasets
from .build import build_video_test_loader, build_video_train_loader, get_video_dataset_dicts
from .dataset_mapper import YTVISDatasetMapper

__all__ = [
    "YTVISDatasetMapper",
    "build_video_test_loader",
    "build_video_train_loader",
    "datasets",
    "get_video_dataset_dicts",
]
