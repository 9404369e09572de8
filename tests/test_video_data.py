"""
YouTube-VIS data: registration of a tiny dataset written in the official layout, the clip mapper
(frame sampling, one augmentation per clip, tracks kept across frames, absent frames empty),
the test mapper, and bad input.
"""
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from video_helpers import box_mask, small_video_config, write_ytvis_split

from mask2former_video.data_video import YTVISDatasetMapper, get_video_dataset_dicts
from mask2former_video.data_video.dataset_mapper import sample_clip_frames
from mask2former_video.data_video.datasets import register_all_video
from mask2former_video.data_video.datasets.ytvis_categories import (
    YTVIS_CATEGORIES_2019,
    YTVIS_CATEGORIES_2021,
)

H, W, LENGTH = 48, 64, 6
PERSON, DOG = 1, 8  # YouTube-VIS 2019 dataset ids (contiguous 0 and 7)


def _video(name, offset):
    """Frames with a box (person, frames 0-3), a disk-like box (dog, polygons, frames 2-5) and
    a crowd region in every frame; each frame's pixels encode its index (to check sampling)."""
    frames, person, dog, crowd = [], [], [], []
    for t in range(LENGTH):
        frame = np.full((H, W, 3), 20 * t + offset, np.uint8)
        p = box_mask(H, W, 4 + 4 * t, 6, 20 + 4 * t, 22) if t <= 3 else None
        d = box_mask(H, W, 40 - 2 * t, 26, 60 - 2 * t, 44) if t >= 2 else None
        c = box_mask(H, W, 0, 40, 10, 48)
        for mask, color in ((p, 200), (d, 120), (c, 60)):
            if mask is not None:
                frame[mask] = color
        frames.append(frame)
        person.append(p), dog.append(d), crowd.append(c)
    tracks = [{"id": 1 + offset, "category_id": PERSON, "masks": person},
              {"id": 2 + offset, "category_id": DOG, "masks": dog, "polygons": True},
              {"id": 3 + offset, "category_id": PERSON, "masks": crowd, "iscrowd": 1}]
    return {"name": name, "frames": frames, "tracks": tracks}


@pytest.fixture(scope="module")
def ytvis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ytvis")
    videos = [_video("0a1b2c3d4e", 0), _video("ffee001122", 3)]
    write_ytvis_split(root, 2019, "train", videos, YTVIS_CATEGORIES_2019)
    write_ytvis_split(root, 2019, "valid", videos, YTVIS_CATEGORIES_2019, with_annotations=False)
    write_ytvis_split(root, 2021, "train", videos, YTVIS_CATEGORIES_2019)  # wrong categories
    register_all_video(str(root))
    yield root
    register_all_video("datasets")


def test_registration_reads_the_official_layout(ytvis_root):
    videos = DatasetCatalog.get("ytvis_2019_train")
    assert len(videos) == 2
    video = videos[0]
    assert video["length"] == LENGTH and (video["height"], video["width"]) == (H, W)
    assert video["file_names"][1] == str(ytvis_root / "ytvis_2019/train/JPEGImages/0a1b2c3d4e/"
                                                      "00005.jpg")
    assert [sorted(a["id"] for a in frame) for frame in video["annotations"]] == [
        [1, 3], [1, 3], [1, 2, 3], [1, 2, 3], [2, 3], [2, 3]]
    assert {a["category_id"] for frame in video["annotations"] for a in frame} == {0, 7}
    assert "annotations" not in DatasetCatalog.get("ytvis_2019_val")[0]
    with pytest.raises(ValueError, match="has an annotated track to train on"):
        get_video_dataset_dicts(["ytvis_2019_val"])


def test_json_of_the_other_year_is_refused_by_name(ytvis_root):
    with pytest.raises(ValueError, match=r"ytvis_2021.*train\.json.*categories differ"):
        DatasetCatalog.get("ytvis_2021_train")
    assert [c["name"] for c in YTVIS_CATEGORIES_2021][:3] == ["airplane", "bear", "bird"]


def test_missing_dataset_names_the_path_and_the_download(ytvis_root, tmp_path):
    register_all_video(str(tmp_path))
    try:
        with pytest.raises(FileNotFoundError, match=r"ytvis_2019.*valid\.json.*YouTube-VIS 2019"):
            DatasetCatalog.get("ytvis_2019_val")
    finally:
        register_all_video(str(ytvis_root))


def test_frame_sampling_stays_within_the_range():
    rng = np.random.RandomState(0)
    for _ in range(200):
        frames = sample_clip_frames(30, 4, 3, False, rng)
        assert len(frames) == 4 == len(set(frames)) and frames == sorted(frames)
        assert max(frames) - min(frames) <= 6 and 0 <= min(frames) and max(frames) < 30
    assert sample_clip_frames(1, 3, 5, False, rng) == [0, 0, 0]  # short video: repeats
    shuffled = [sample_clip_frames(30, 5, 10, True, rng) for _ in range(20)]
    assert any(f != sorted(f) for f in shuffled)


def _train_mapper(**overrides):
    cfg = small_video_config(num_frames=3)
    cfg.INPUT.SAMPLING_FRAME_RANGE = 2
    cfg.INPUT.MIN_SIZE_TRAIN = (32, 96)
    cfg.INPUT.MAX_SIZE_TRAIN = 1000
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice_by_clip"
    cfg.INPUT.RANDOM_FLIP = "flip_by_clip"
    cfg.INPUT.FORMAT = "RGB"
    for key, value in overrides.items():
        setattr(cfg.INPUT, key, value)
    return YTVISDatasetMapper(cfg, is_train=True)


def test_train_mapper_gives_clips_with_tracks_kept_across_frames(ytvis_root):
    video = DatasetCatalog.get("ytvis_2019_train")[0]
    mapper = _train_mapper()
    sizes, flips = set(), set()
    for seed in range(30):
        np.random.seed(seed)
        torch.manual_seed(seed)
        clip = mapper(video)
        frame_ids = clip["frame_ids"]
        assert len(frame_ids) == 3 and frame_ids == sorted(frame_ids)
        assert max(frame_ids) - min(frame_ids) <= 4
        assert len(clip["image"]) == len(clip["instances"]) == 3
        shapes = {tuple(image.shape) for image in clip["image"]}
        assert len(shapes) == 1  # one resize for the whole clip
        (channels, height, width), = shapes
        sizes.add(height)
        for image, t in zip(clip["image"], frame_ids):  # each frame is the sampled one
            assert abs(float(image[:, :4, :].float().mean()) - 20 * t) < 3
        # The same tracks, in the same order, in every frame; the crowd is not a target.
        visible = {1: lambda t: t <= 3, 2: lambda t: t >= 2}  # person, dog
        tracks = [k for k in (1, 2) if any(visible[k](t) for t in frame_ids)]
        assert [frame.gt_ids.tolist() for frame in clip["instances"]] == [
            [k if visible[k](t) else -1 for k in tracks] for t in frame_ids]
        present = set(tracks)
        for frame, t in zip(clip["instances"], frame_ids):
            assert frame.gt_classes.tolist() == [c for c, k in ((0, 1), (7, 2)) if k in present]
            masks = frame.gt_masks.tensor
            assert masks.shape == (len(present), height, width)
            assert all(bool(m.any()) == (i != -1) for m, i in zip(masks, frame.gt_ids.tolist()))
        # Masks moved with the frame: the person's mask lies on its painted pixels.
        first = clip["instances"][0]
        if first.gt_ids[0] == 1:
            image = clip["image"][0]
            person = first.gt_masks.tensor[0]
            assert (image[0][person].float() - 200).abs().mean() < 20
            flips.add(bool(person[:, : width // 2].sum() < person[:, width // 2:].sum()))
    assert sizes == {32, 96} and flips == {False, True}


def test_per_frame_flips_and_extra_augmentations_are_accepted(ytvis_root):
    video = DatasetCatalog.get("ytvis_2019_train")[1]
    mapper = _train_mapper(RANDOM_FLIP="horizontal", AUGMENTATIONS=["brightness", "rotation"],
                           MIN_SIZE_TRAIN_SAMPLING="range")
    np.random.seed(0)
    clip = mapper(video)
    assert len(clip["instances"]) == 3
    with pytest.raises(ValueError, match="INPUT.AUGMENTATIONS names 'blur'"):
        _train_mapper(AUGMENTATIONS=["blur"])
    with pytest.raises(ValueError, match="INPUT.RANDOM_FLIP='sideways'"):
        _train_mapper(RANDOM_FLIP="sideways")


def test_crop_is_one_per_clip(ytvis_root):
    video = DatasetCatalog.get("ytvis_2019_train")[0]
    cfg = small_video_config(num_frames=3)
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.TYPE = "absolute_range"
    cfg.INPUT.CROP.SIZE = (20, 40)
    cfg.INPUT.MIN_SIZE_TRAIN = (24,)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice_by_clip"
    cfg.INPUT.RANDOM_FLIP = "flip_by_clip"
    mapper = YTVISDatasetMapper(cfg, is_train=True)
    assert isinstance(mapper.augmentations[0][0], T.RandomCrop)
    shapes = set()
    for seed in range(5):
        np.random.seed(seed)
        clip = mapper(video)
        clip_shapes = {tuple(image.shape) for image in clip["image"]}
        assert len(clip_shapes) == 1
        shapes |= clip_shapes
    assert len(shapes) > 1  # random crop sizes, from one clip to the next


def test_test_mapper_reads_every_frame(ytvis_root):
    cfg = small_video_config()
    cfg.INPUT.MIN_SIZE_TEST = 24
    video = DatasetCatalog.get("ytvis_2019_val")[1]
    data = YTVISDatasetMapper(cfg, is_train=False)(video)
    assert data["frame_ids"] == list(range(LENGTH)) and "instances" not in data
    assert [tuple(i.shape) for i in data["image"]] == [(3, 24, 32)] * LENGTH
    assert (data["height"], data["width"], data["video_id"]) == (H, W, 2)


def test_training_on_a_split_without_annotations_names_the_video(ytvis_root):
    video = DatasetCatalog.get("ytvis_2019_val")[0]
    with pytest.raises(ValueError, match="has no annotations"):
        _train_mapper()(video)
