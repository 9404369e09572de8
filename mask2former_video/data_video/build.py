"""Data loaders over videos: training clips (resumable stream) and whole videos for inference."""

from detectron2.data import DatasetCatalog, build_detection_test_loader

from mask2former.engine import build_resumable_train_loader

from .dataset_mapper import YTVISDatasetMapper

__all__ = ["get_video_dataset_dicts", "build_video_train_loader", "build_video_test_loader"]


def _has_tracks(video):
    return any(not obj.get("iscrowd", 0) for frame in video["annotations"] for obj in frame)


def get_video_dataset_dicts(names, filter_empty=True):
    """
    The video dicts of the datasets ``names``, concatenated; with ``filter_empty``, videos
    without a non-crowd track are left out (training).
    """
    dicts = []
    for name in names:
        videos = DatasetCatalog.get(name)
        if not videos:
            raise ValueError(f"Dataset {name!r} has no videos.")
        dicts.extend(videos)
    if filter_empty:
        dicts = [v for v in dicts if "annotations" in v and _has_tracks(v)]
        if not dicts:
            raise ValueError(
                f"No video of {', '.join(names)} has an annotated track to train on "
                "(test splits have no annotations)."
            )
    return dicts


def build_video_train_loader(cfg, mapper=None):
    """
    The training loader of cfg.DATASETS.TRAIN: batches of SOLVER.IMS_PER_BATCH clips (over all
    workers), each a video's clip mapped by ``mapper`` (default :class:`YTVISDatasetMapper`),
    in a stream that resumes exactly (mask2former/engine/resumable_loader.py).
    """
    videos = get_video_dataset_dicts(cfg.DATASETS.TRAIN, cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    mapper = mapper or YTVISDatasetMapper(cfg, is_train=True)
    return build_resumable_train_loader(cfg, mapper, dataset_dicts=videos)


def build_video_test_loader(cfg, dataset_name, mapper=None):
    """The inference loader of ``dataset_name``: one whole video per batch, every frame."""
    return build_detection_test_loader(
        get_video_dataset_dicts([dataset_name], filter_empty=False),
        mapper=mapper or YTVISDatasetMapper(cfg, is_train=False),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
