"""The dataset mapper of video instance segmentation: a YouTube-VIS video -> a clip."""
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.structures import BitMasks, Instances

from mask2former.data.dataset_mappers.utils import image_to_tensor, rasterize, read_image

from .augmentation import apply_clip_augmentation, build_clip_augmentation

__all__ = ["YTVISDatasetMapper", "sample_clip_frames"]


def sample_clip_frames(length, num_frames, frame_range, shuffle, rng):
    """
    Frame indices of a training clip: a reference frame drawn uniformly, and ``num_frames - 1``
    other frames drawn without replacement within ``frame_range`` frames before or after it
    (with replacement when there are not enough); in video order unless ``shuffle``.

    Args:
        length: frames in the video (>= 1).
        rng: ``numpy.random`` (the global generator, seeded per sample by the training
            stream) or a ``numpy.random.RandomState``.

    Returns:
        list of ``num_frames`` ints in [0, length).
    """
    reference = int(rng.randint(length))
    window = [i for i in range(max(0, reference - frame_range),
                               min(length, reference + frame_range + 1)) if i != reference]
    others = []
    if num_frames > 1:
        if not window:
            window = [reference]
        others = rng.choice(window, num_frames - 1, replace=len(window) < num_frames - 1)
    frames = sorted([reference] + [int(i) for i in others])
    if shuffle:
        rng.shuffle(frames)
    return frames


class YTVISDatasetMapper:
    """
    Turn a video dataset dict (see :func:`~.datasets.ytvis.load_ytvis_json`) into a model input
    (see :class:`~mask2former_video.VideoMaskFormer`).

    Training: a clip of INPUT.SAMPLING_FRAME_NUM frames (:func:`sample_clip_frames`), augmented
    together (:mod:`.augmentation`); "instances" holds, in every frame, the same tracks (every
    non-crowd track annotated in a sampled frame, ordered by track id) with "gt_ids" (-1 where
    the track is not visible in the frame after augmentation), "gt_classes" and "gt_masks"
    (empty where absent). Inference: every frame of the video, resized for testing.

    The output dict has "image" (list of (C, H, W) uint8 tensors), "file_names", "height",
    "width" (the original size), "length", "video_id" and, in training, "instances".
    """

    @configurable
    def __init__(self, is_train=True, *, augmentations, image_format, sampling_frame_num,
                 sampling_frame_range, sampling_frame_shuffle):
        """
        Args:
            is_train: sample a clip and load the annotations (else take every frame).
            augmentations: list of (Augmentation, per_clip), see
                :func:`~.augmentation.build_clip_augmentation`.
            image_format (str): e.g. "RGB".
            sampling_frame_num, sampling_frame_range, sampling_frame_shuffle: see
                :func:`sample_clip_frames`.
        """
        if sampling_frame_num < 1:
            raise ValueError(f"INPUT.SAMPLING_FRAME_NUM must be >= 1, got {sampling_frame_num}")
        self.is_train = is_train
        self.augmentations = augmentations
        self.image_format = image_format
        self.sampling_frame_num = sampling_frame_num
        self.sampling_frame_range = sampling_frame_range
        self.sampling_frame_shuffle = sampling_frame_shuffle

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return {
            "is_train": is_train,
            "augmentations": build_clip_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "sampling_frame_num": cfg.INPUT.SAMPLING_FRAME_NUM,
            "sampling_frame_range": cfg.INPUT.SAMPLING_FRAME_RANGE,
            "sampling_frame_shuffle": cfg.INPUT.SAMPLING_FRAME_SHUFFLE,
        }

    def __call__(self, dataset_dict):
        video = dict(dataset_dict)  # the annotations are only read
        length = video["length"]
        if self.is_train:
            frame_ids = sample_clip_frames(length, self.sampling_frame_num,
                                           self.sampling_frame_range,
                                           self.sampling_frame_shuffle, np.random)
        else:
            frame_ids = list(range(length))
        size = {"height": video["height"], "width": video["width"]}
        images = [read_image(dict(size, file_name=video["file_names"][i]), self.image_format)
                  for i in frame_ids]
        images, transforms = apply_clip_augmentation(self.augmentations, images)

        video["file_names"] = [video["file_names"][i] for i in frame_ids]
        video["frame_ids"] = frame_ids
        video["image"] = [image_to_tensor(image) for image in images]
        annotations = video.pop("annotations", None)
        if self.is_train:
            if annotations is None:
                raise ValueError(
                    f"Video {video['video_id']} ({video['file_names'][0]}) has no annotations: "
                    "training needs a dataset with annotations (the train split)."
                )
            video["instances"] = self._clip_instances(
                [annotations[i] for i in frame_ids], transforms, images,
                (video["height"], video["width"]),
            )
        return video

    @staticmethod
    def _clip_instances(frame_annotations, transforms, images, original_size):
        """
        One :class:`Instances` per frame, all with the clip's tracks in one order; masks are
        rasterized at the ``original_size`` (H0, W0) of the video and then transformed.
        """
        tracks = {}
        for annotations in frame_annotations:
            for obj in annotations:
                if not obj.get("iscrowd", 0):
                    tracks.setdefault(obj["id"], obj["category_id"])
        track_ids = sorted(tracks)
        classes = torch.tensor([tracks[i] for i in track_ids], dtype=torch.int64)
        result = []
        for annotations, transform, image in zip(frame_annotations, transforms, images):
            height, width = image.shape[:2]
            by_id = {obj["id"]: obj for obj in annotations}
            masks = torch.zeros((len(track_ids), height, width), dtype=torch.bool)
            for k, track_id in enumerate(track_ids):
                if track_id in by_id:
                    mask = rasterize(by_id[track_id]["segmentation"], *original_size)
                    mask = transform.apply_segmentation(mask)
                    masks[k] = torch.from_numpy(np.ascontiguousarray(mask) == 1)
            present = masks.flatten(1).any(dim=1)
            instances = Instances((height, width))
            ids = torch.tensor(track_ids, dtype=torch.int64)
            instances.gt_ids = torch.where(present, ids, torch.full_like(ids, -1))
            instances.gt_classes = classes.clone()
            instances.gt_masks = BitMasks(masks)
            result.append(instances)
        return result
